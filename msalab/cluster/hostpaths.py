"""Files the offline cluster's components write at fixed host paths, whatever their own
directories are configured to be, and how `down` removes exactly those.

- the kubelet's device-plugin socket is compiled in: /var/lib/kubelet/device-plugins/;
- the CNI library caches each attachment's result in /var/lib/cni/results/, and removes an
  entry only on a clean teardown, which `down` (killing the shims) does not give it.

`up` records what exists there (snapshot); `down` removes what is new since, and the folders
that did not exist before, never anything else. The footprint lists the same paths, so a
leftover shows in `make test`'s before/after comparison even on a machine that had none.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

# Folders the cluster may create (parents first); each is removed at `down` only if it did not
# exist at `up`. The default runtime sockets are listed so the footprint shows them; the course's
# containerd is configured never to create them (cluster/offline/containerd.toml).
# /var/lib/cni/networks: host-local's addresses for nerdctl's networks (kind's nerdctl provider).
CREATED_FOLDERS = ("/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/var/lib/cni", "/var/lib/cni/results",
                   "/var/lib/cni/networks")
WATCHED = CREATED_FOLDERS + ("/var/lib/kubelet/device-plugins/kubelet.sock", "/run/containerd/containerd.sock",
                             "/run/containerd/containerd.sock.ttrpc", "/var/run/nri", "/var/lib/containerd",
                             "/etc/cni/net.d", "/lib/modules",  # kind's nodes mount /lib/modules (nerdctl.py)
                             "/var/lib/msalab-kind", "/run/msalab-kind", "/opt/containerd",  # nerdctl.py's containerd
                             # runc's default state of the course's containerd namespaces. /run/containerd
                             # itself is not watched: Docker's shims make it too (its namespace is moby).
                             "/run/containerd/runc/k8s.io", "/run/containerd/runc/msalab",
                             "/var/lib/msalab-workshop")  # the workshop hub's volume (msalab.workshop.deploy)
WORKSHOP_VOLUMES = Path("/var/lib/msalab-workshop")  # a workshop hub's volume on the offline node (msalab.workshop)
CNI_RESULTS = Path("/var/lib/cni/results")
CNI_NETWORKS = Path("/var/lib/cni/networks")  # host-local's addresses, a folder per network


def current() -> dict:
    return {"exists": [p for p in WATCHED if os.path.lexists(p)],
            "cni_results": sorted(os.listdir(CNI_RESULTS)) if CNI_RESULTS.is_dir() else [],
            "cni_networks": sorted(os.listdir(CNI_NETWORKS)) if CNI_NETWORKS.is_dir() else []}


def save_snapshot(path: Path) -> None:
    if not path.exists():  # the first `up` records the machine; a second `up` must not overwrite it
        path.write_text(json.dumps(current(), indent=1))


def restore(path: Path) -> list[str]:
    """Remove what the cluster added since the snapshot; return what could not be removed."""
    if not path.exists():
        return []
    before = json.loads(path.read_text())
    problems = []
    for name in set(current()["cni_results"]) - set(before["cni_results"]):
        try:
            (CNI_RESULTS / name).unlink()
        except OSError as err:
            problems.append(f"{CNI_RESULTS / name}: {err}")
    for name in set(current()["cni_networks"]) - set(before.get("cni_networks", [])):
        shutil.rmtree(CNI_NETWORKS / name, ignore_errors=True)
    socket = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
    if str(socket) not in before["exists"]:
        socket.unlink(missing_ok=True)
    for folder in reversed(CREATED_FOLDERS):  # children first
        if folder not in before["exists"] and os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)
    return problems


def footprint_lines() -> list[str]:
    now = current()
    return ([f"host path {p}" for p in now["exists"]] + [f"cni result {n}" for n in now["cni_results"]]
            + [f"cni network {n}" for n in now["cni_networks"]])


def unmount_under(*roots: Path) -> None:
    """Unmount everything mounted at or below these folders, deepest first."""
    import subprocess

    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted(mounts, key=len, reverse=True):
        if any(mount.startswith(str(root)) for root in roots):
            subprocess.run(["umount", "-l", mount], capture_output=True)


def shims_of(state: Path) -> list[int]:
    """The container shims of the containerd whose state folder is `state` (they name it)."""
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "containerd-shim" in " ".join(p.info["cmdline"] or []) and str(state) in " ".join(p.info["cmdline"] or [])]


def shim_sockets(pids: list[int]) -> list[str]:
    """The sockets these container shims listen on. Every containerd's shims put them in
    /run/containerd/s, whatever its own state folder; a shim that is killed leaves its socket
    there, so `down` reads them first and removes them after (only those: Docker's are there too)."""
    import psutil

    found = []
    for pid in pids:
        try:
            found += [c.laddr for c in psutil.Process(pid).net_connections(kind="unix")
                      if c.laddr and c.laddr.startswith("/run/containerd/s/")]
        except psutil.Error:
            pass
    return found


def remove_files(names: list[str]) -> None:
    for name in names:
        Path(name).unlink(missing_ok=True)
