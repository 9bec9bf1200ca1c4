"""A Service's address never leads out of the node: two routing rules on the node.

kube-proxy rewrites (DNAT) a connection to a Service's address into one to a ready pod before
the node routes it. A connection to a Service that has no ready pod keeps the Service's
address, and kube-proxy then means to refuse it (a REJECT rule in the filter table's FORWARD
chain). But a rule earlier in FORWARD that accepts pods' traffic wins over that REJECT: the
offline cluster's own rule for its bridge, and kube-router's "traffic that complies with the
network policies" ACCEPT (the workshop's enforcer where the kernel lacks nftables' queue). The
node then routes the packet like any other address: by its default route, out of the node and,
here, out of the machine to whatever answers there. Seen on kind: for minutes after a workshop
hub restarted, its proxy's calls to the hub's Service were answered 404 from outside the machine.

The rules act at routing, so no firewall rule comes before them:
- a packet the node forwards (a pod's) to the Service range is refused ("prohibit": the sender
  gets "no route to host" at once);
- the node's own packets (iif lo: host-network pods, the kubelet) are routed as before. Their
  route is chosen before kube-proxy's rewrite (and chosen again after it), so refusing them
  here would refuse every Service, ready or not.

A packet kube-proxy has rewritten carries a pod's address by the time it is routed, so no
working Service is touched.
"""

from __future__ import annotations

import subprocess

from .. import paths
from ..errors import LabError

# Before the main table (32766); nothing else on these machines uses these priorities.
OWN_TRAFFIC, FORWARDED = 1080, 1081


def service_cidr() -> str:
    return paths.versions()["cluster"]["network"]["service_cidr"]


def rules(cidr: str | None = None) -> dict[int, list[str]]:
    cidr = cidr or service_cidr()
    return {OWN_TRAFFIC: ["to", cidr, "iif", "lo", "lookup", "main"], FORWARDED: ["to", cidr, "prohibit"]}


def add_command(cidr: str | None = None) -> str:
    """One shell line that adds both rules, each unless its priority is taken (so a second `up`
    changes nothing). The node's own rule comes first, so nothing of its own is ever refused."""
    return " && ".join(f"{{ ip rule show priority {priority} | grep -q . || ip rule add {' '.join(rule)} "
                       f"priority {priority}; }}" for priority, rule in rules(cidr).items())


def remove_command(cidr: str | None = None) -> str:
    """Deletes exactly these rules (a rule of someone else's at the same priority stays)."""
    return "; ".join(f"while ip rule del {' '.join(rule)} priority {priority} 2>/dev/null; do :; done"
                     for priority, rule in reversed(rules(cidr).items()))


UNIT = "msalab-service-range.service"


def boot_unit() -> str:
    """A kind node's systemd unit that adds the rules at each boot: a node restarted with its
    runtime (a reboot, Docker restarted) comes back in a new network namespace, without them."""
    return (f"# Written by msalab (msalab/cluster/servicerange.py)\n[Unit]\n"
            f"Description=Refuse forwarded packets to the Service range (kube-proxy did not rewrite them)\n"
            f"Before=kubelet.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/bin/sh -c '{add_command()}'\n\n[Install]\nWantedBy=multi-user.target\n")


def install_on_node_command() -> str:
    """For a kind node: the unit, enabled, and the rules now."""
    return (f"cat > /etc/systemd/system/{UNIT} <<'EOF'\n{boot_unit()}EOF\n"
            f"systemctl daemon-reload && systemctl enable {UNIT} >/dev/null 2>&1 && {add_command()}")


def in_place(rule_listing: str, cidr: str | None = None) -> bool:
    """Whether `ip rule show` printed both rules (it prints a rule's words in the order given)."""
    lines = rule_listing.splitlines()
    return all(any(line.startswith(f"{priority}:") and " ".join(rule) in line for line in lines)
               for priority, rule in rules(cidr).items())


def apply_here() -> None:
    """On this machine (the offline cluster's node); a rule of someone else's at one of these
    priorities would leave the range open, so `up` stops there and says so."""
    subprocess.run(["sh", "-c", add_command()], check=True, capture_output=True, text=True)
    listing = subprocess.run(["ip", "rule", "show"], capture_output=True, text=True).stdout
    if not in_place(listing):
        raise LabError(f"this machine's routing rules at priority {OWN_TRAFFIC} or {FORWARDED} are not the "
                       f"cluster's (ip rule show: {listing.strip()!r})",
                       "remove the rule that holds that priority (ip rule del priority N), then rerun the same command")


def remove_here() -> None:
    subprocess.run(["sh", "-c", remove_command()], capture_output=True)
