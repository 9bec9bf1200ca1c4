"""cluster down removes exactly the iptables rules the cluster added: tested with real
iptables, inside a network namespace of its own so the host's rules are never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from msalab import paths

needs_root_iptables = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("iptables-save") or not shutil.which("ip"),
    reason="needs root, iproute2 and iptables (make setup installs them)")

# Runs inside the namespace: what another program made before `up`, what the cluster adds
# (as the kubelet, kube-proxy and the CNI plugins do), then `down`'s restore.
SCENARIO = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    from msalab.cluster import netfilter

    def ipt(cmd, *args):
        subprocess.run([cmd, *args], check=True)

    snapshot = Path(sys.argv[1])
    # Before up: another program's CNI chain and jump, and a Docker-like FORWARD rule.
    ipt("iptables", "-t", "nat", "-N", "CNI-OTHER")
    ipt("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.88.0.0/16", "-j", "CNI-OTHER")
    ipt("iptables", "-A", "FORWARD", "-i", "docker0", "-j", "ACCEPT")
    before = {f: netfilter.comparable(netfilter.dump(f)) for f in netfilter.FAMILIES}
    netfilter.save_snapshot(snapshot)
    # The cluster: kubelet chains in both families and in a table that did not exist
    # (mangle), kube-proxy's jump, CNI's per-pod chain, the course's own FORWARD rule.
    for cmd in ("iptables", "ip6tables"):
        ipt(cmd, "-N", "KUBE-FIREWALL")
        ipt(cmd, "-A", "KUBE-FIREWALL", "-m", "comment", "--comment", "block incoming localnet", "-j", "DROP")
        ipt(cmd, "-I", "INPUT", "-j", "KUBE-FIREWALL")
        ipt(cmd, "-t", "mangle", "-N", "KUBE-KUBELET-CANARY")
    ipt("iptables", "-t", "nat", "-N", "KUBE-SERVICES")
    ipt("iptables", "-t", "nat", "-A", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals",
        "-j", "KUBE-SERVICES")
    ipt("iptables", "-t", "nat", "-N", "CNI-abc123")
    ipt("iptables", "-t", "nat", "-A", "CNI-abc123", "-j", "MASQUERADE")
    ipt("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.0.7/32", "-j", "CNI-abc123")
    ipt("iptables", "-I", "FORWARD", "-i", "msalab0", "-m", "comment", "--comment", "msalab cluster pods",
        "-j", "ACCEPT")
    # And after up, another program adds a rule of its own: it must stay.
    ipt("iptables", "-A", "FORWARD", "-i", "docker1", "-j", "ACCEPT")
    problems = netfilter.restore(snapshot, ("msalab", "msalab0", "10.244.0.0/24"))
    after = {f: netfilter.comparable(netfilter.dump(f)) for f in netfilter.FAMILIES}
    print(json.dumps({"before": before, "after": after, "problems": problems}))
""")


def run_in_own_netns(script: str, tmp_path) -> dict:
    """Run `script` inside a network namespace made for it (its iptables start empty and are
    gone with it); the script prints its outcome as JSON."""
    import json

    netns = f"msalab-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        result = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script,
                                 str(tmp_path / "before.json")], capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(paths.REPO)}, timeout=60)
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@needs_root_iptables
def test_restore_removes_exactly_what_the_cluster_added(tmp_path):
    outcome = run_in_own_netns(SCENARIO, tmp_path)
    assert outcome["problems"] == []
    after_v4 = outcome["after"]["ipv4"]
    # Everything that was there before is still there, in the same order ...
    other = "-A FORWARD -i docker1 -j ACCEPT"
    assert [line for line in after_v4 if line != other] == outcome["before"]["ipv4"]
    # ... the rule another program added meanwhile too, and nothing of the cluster's.
    assert other in after_v4
    assert not [line for line in after_v4 if "KUBE-" in line or "CNI-abc123" in line or "msalab" in line]
    assert outcome["after"]["ipv6"] == outcome["before"]["ipv6"]  # ip6 filter and mangle gone again


UNSAVED_FAMILY = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    from msalab.cluster import netfilter

    snapshot = Path(sys.argv[1])
    subprocess.run(["ip6tables", "-N", "KUBE-OTHER"], check=True)  # there before up, of another program
    # A snapshot whose ip6tables-save failed: the family is unknown, not empty.
    snapshot.write_text(json.dumps({"ipv4": netfilter.dump("ipv4"), "ipv6": None}))
    subprocess.run(["iptables", "-N", "KUBE-FIREWALL"], check=True)
    problems = netfilter.restore(snapshot, ("msalab",))
    print(json.dumps({"v4": netfilter.dump("ipv4"), "v6": netfilter.dump("ipv6"), "problems": problems}))
""")


@needs_root_iptables
def test_a_family_that_could_not_be_saved_is_left_alone(tmp_path):
    """Taking a failed save for "no rules" would make every KUBE-* chain look new, and delete it."""
    outcome = run_in_own_netns(UNSAVED_FAMILY, tmp_path)
    assert "KUBE-FIREWALL" not in outcome["v4"]  # the saved family is restored
    assert ":KUBE-OTHER" in outcome["v6"]  # the unsaved one is not touched
    assert any("ipv6" in problem and "left as they are" in problem for problem in outcome["problems"])
