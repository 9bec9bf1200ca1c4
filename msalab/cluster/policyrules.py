"""What a NetworkPolicy enforcer leaves on a host when it is killed rather than stopped, and
its removal. The workshop installs the enforcer (msalab.workshop.netpol); `cluster down`
kills the offline cluster's pods with it and calls remove_leftovers() (manage.down), so this
module depends on nothing of either.
"""

from __future__ import annotations

import shutil
import subprocess

from .. import engine, paths
from ..errors import LabError

KNP = "kube-network-policies"
NFT_TABLE = ("inet", KNP)  # the table it creates (networkpolicy.Config.NFTableName's default)

# -- kube-router's ---------------------------------------------------------------------
KUBE_ROUTER_CHAINS = ("KUBE-ROUTER-", "KUBE-NWPLCY-", "KUBE-POD-FW-")  # its filter-table chains
KUBE_ROUTER_NAMES = (*KUBE_ROUTER_CHAINS, "KUBE-SRC-", "KUBE-DST-")  # and its ipsets
# Removes exactly what kube-router's firewall makes: the jumps from INPUT, FORWARD and OUTPUT,
# its chains, its KUBE-SRC-/KUBE-DST- ipsets (inet6: for IPv6). Its own --cleanup-config would
# also flush every IPVS service on the node and clean up its router's and proxy's state.
KUBE_ROUTER_CLEANUP = r"""
for tool in iptables ip6tables; do
  rules=$("$tool-save" -t filter 2>/dev/null) || continue
  chains=$(printf '%s\n' "$rules" | sed -n 's/^:\(KUBE-ROUTER-[^ ]*\|KUBE-NWPLCY-[^ ]*\|KUBE-POD-FW-[^ ]*\) .*/\1/p')
  { echo '*filter'
    printf '%s\n' "$rules" | sed -n 's/^-A \(INPUT\|FORWARD\|OUTPUT\) \(.* -j KUBE-ROUTER-[A-Z]*\)$/-D \1 \2/p'
    for chain in $chains; do echo "-F $chain"; done
    for chain in $chains; do echo "-X $chain"; done
    echo COMMIT; } | "$tool-restore" --noflush
done
if command -v ipset >/dev/null; then
  ipset list -n | grep -E '^(inet6:)?KUBE-(SRC|DST)-' | while read -r set; do ipset destroy "$set"; done
fi
echo "kube-router's chains and ipsets removed"
"""
# kube-router leaves its rules and ipsets when it stops: run it, and once it has ended
# (SIGTERM from the kubelet, or a crash) remove them, so a deleted pod leaves nothing behind.

def _nft(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("nft") is None:
        raise LabError("the nft command is not installed (it checks the host's nftables tables)",
                       "apt-get install nftables   (make setup does it)")
    return subprocess.run(["nft", *args], capture_output=True, text=True)


def table_present() -> bool:
    """kube-network-policies' nftables table is on this host."""
    return _nft("list", "table", *NFT_TABLE).returncode == 0


def _kube_router_image() -> str:
    return paths.versions()["workshop"]["network_policies"]["fallback"]["image"]


def _host_shell(script: str) -> str:
    """Run a shell script in this host's network namespace with the kube-router image's iptables
    and ipset (the host may have no ipset command), or the host's own where that image is not here."""
    image = _kube_router_image()
    command = ["sh", "-c", script]
    if engine.image_present(image):
        command = ["docker", "run", "--rm", "--network=host", "--cap-drop=ALL", "--cap-add=NET_ADMIN",
                   "--cap-add=NET_RAW", "--entrypoint=/bin/sh", image, "-c", script]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"{' '.join(command[:2])} failed: {result.stderr.strip()[-300:]}",
                       engine.DOCKER_FIX if command[0] == "docker" else "run it as root")
    return result.stdout


def kube_router_leftovers() -> list[str]:
    """kube-router's chains (filter table, both families) and ipsets on this host."""
    listing = _host_shell("iptables-save -t filter; ip6tables-save -t filter; ipset list -n 2>/dev/null || true")
    names = (line.removeprefix(":").split()[0] for line in listing.splitlines() if line.strip())
    return sorted({name for name in names if name.removeprefix("inet6:").startswith(KUBE_ROUTER_NAMES)})


def remove_leftovers() -> list[str]:
    """Remove what an enforcer that was killed, not stopped, left on this host; returns what was
    there. Left alone, kube-network-policies' queue has no reader (new connections of the pods it
    listed are dropped) and kube-router's rules go on filtering by stale addresses. `cluster
    down` kills the pods without stopping them, so it should call this too."""
    table, router = table_present(), kube_router_leftovers()
    if table:
        _nft("delete", "table", *NFT_TABLE)
    if router:
        _host_shell(KUBE_ROUTER_CLEANUP)
    still = ([" ".join(NFT_TABLE)] if table_present() else []) + kube_router_leftovers()
    if still:
        raise LabError(f"could not remove from this host: {', '.join(still)}",
                       "python -c 'from msalab.cluster import policyrules; print(policyrules.remove_leftovers())'   (as root)")
    return ([" ".join(NFT_TABLE)] if table else []) + router
