"""kind's nodes where Docker cannot run them: kind's nerdctl provider on a containerd of the
course's own.

kind creates every node with `--privileged`. Docker 20.10 then asks the kernel for every
capability it knows; where processes lack one (CAP_SYS_RESOURCE on the machines the course is
built on) that fails, whatever else is passed. nerdctl gives a privileged container the
capabilities that exist. So, where Docker's privileged containers fail, the course runs kind
unmodified with KIND_EXPERIMENTAL_PROVIDER=nerdctl, on:
- containerd 1.7 and nerdctl 1.7, built from the Go module proxy (nerdctl 1.7 drives
  containerd 1.7; the node's own containerd is 2.x, inside the node);
- its own root, state, socket, namespace and CNI configuration under /var/lib/msalab-kind and
  /run/msalab-kind, so it never touches Docker's containerd or the host's CNI files.
`stop` takes all of it away again: processes, mounts, the node network's bridge, the packet-
filter rules its CNI plugins added, and the folders.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil

from .. import paths
from ..errors import LabError
from . import gobuild, hostpaths, netfilter, offline
from .hostpaths import unmount_under

ROOT = Path("/var/lib/msalab-kind")
STATE = Path("/run/msalab-kind")
SOCKET = STATE / "containerd.sock"
NAMESPACE = "msalab"
MODULES = Path("/lib/modules")  # kind mounts it into each node; where it is absent, the mount makes it
# containerd 1.7 keeps some state at fixed paths, whatever its configuration: the shims'
# sockets (s/) and runc's state (runc/NAMESPACE). `down` removes the course's: its shims'
# sockets and its namespace's runc state. (The folders stay: Docker's shims use them too.)
DEFAULT_STATE = Path("/run/containerd")


def spec() -> dict:
    return paths.versions()["cluster"]["kind"]["nerdctl"]


@functools.cache  # every nerdctl and kind call needs them: look the builds up once per process
def binaries() -> dict[str, Path]:
    cluster = paths.versions()["cluster"]
    return {"nerdctl": gobuild.build_nerdctl(spec()["version"]),
            "containerd": gobuild.build_containerd_v1(spec()["containerd"]),
            "runc": gobuild.build_runc(cluster["runc"]["version"])}


def docker_privileged_works(image: str) -> tuple[bool, str]:
    """Whether Docker can run a privileged container here (kind's Docker provider needs it)."""
    try:
        result = subprocess.run(["docker", "run", "--rm", "--privileged", "--entrypoint", "/bin/true", image],
                                capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "Docker did not run a privileged container within 120 s"
    if result.returncode == 0:
        return True, "Docker runs privileged containers"
    reason = (result.stderr.strip().splitlines() or ["?"])[0].split("runc create failed:")[-1].strip()
    return False, f"Docker cannot run privileged containers here ({reason[-120:]})"


def missing_capabilities(status: str | None = None) -> list[str]:
    """Capabilities up to the kernel's last one that this machine's processes cannot have (their
    bounding set lacks them): Docker 20.10 asks for all it knows for a privileged container,
    and fails if one is missing. `status` is /proc/self/status's text (read if not given)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text()) if Path("/proc/sys/kernel/cap_last_cap").exists() else 40
    if status is None:
        if not Path("/proc/self/status").exists():  # not Linux (Docker Desktop): Docker's VM decides
            return []
        status = Path("/proc/self/status").read_text()
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            bounding = int(line.split()[1], 16)
            return [CAPABILITIES.get(bit, f"capability {bit}") for bit in range(last + 1) if not bounding >> bit & 1]
    return []


# The ones a sandboxed host is likely to withhold, by number (linux/capability.h).
CAPABILITIES = {12: "CAP_NET_ADMIN", 16: "CAP_SYS_MODULE", 21: "CAP_SYS_ADMIN", 24: "CAP_SYS_RESOURCE",
                25: "CAP_SYS_TIME", 37: "CAP_AUDIT_READ", 38: "CAP_PERFMON", 39: "CAP_BPF", 40: "CAP_CHECKPOINT_RESTORE"}


def _config_dir() -> Path:
    return ROOT / "config"


def env() -> dict[str, str]:
    """The environment kind (and nerdctl under it) runs with."""
    bins = binaries()
    path = os.pathsep.join(str(b) for b in (bins["nerdctl"], bins["containerd"], bins["runc"]))
    return {**os.environ, "KIND_EXPERIMENTAL_PROVIDER": "nerdctl", "NERDCTL_TOML": str(_config_dir() / "nerdctl.toml"),
            "PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}"}


def nerdctl(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(binaries()["nerdctl"] / "nerdctl"), *args], env=env(), capture_output=True,
                            **kwargs)
    if check and result.returncode != 0:
        err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode(errors="replace")
        raise LabError(f"nerdctl {' '.join(args[:2])} failed: {err.strip()[-300:]}",
                       "python -m msalab cluster down; then python -m msalab cluster up --provider kind")
    return result


def _write_config() -> None:
    config = _config_dir()
    (config / "net.d").mkdir(parents=True, exist_ok=True)
    (config / "containerd.toml").write_text(f"""# The containerd nerdctl drives for kind's nodes (msalab.cluster.nerdctl).
version = 2
root = "{ROOT / 'containerd'}"
state = "{STATE / 'containerd'}"
# Only nerdctl uses it: no CRI (that is the node's own containerd's job), and no `opt`
# plugin (it would create /opt/containerd on the host).
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]
[grpc]
  address = "{SOCKET}"
[ttrpc]
  address = "{SOCKET}.ttrpc"
""")
    (config / "nerdctl.toml").write_text(f"""# nerdctl for kind's nodes: the course's containerd, its own namespace, data and CNI files.
address = "unix://{SOCKET}"
namespace = "{NAMESPACE}"
data_root = "{ROOT / 'nerdctl'}"
cni_path = "/usr/lib/cni"
cni_netconfpath = "{config / 'net.d'}"
cgroup_manager = "cgroupfs"
snapshotter = "overlayfs"
""")


def _snapshots() -> dict[str, Path]:
    return {"netfilter": ROOT / "netfilter-before.json", "hostpaths": ROOT / "hostpaths-before.json",
            "modules": ROOT / "lib-modules-absent"}


def _containerd_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if str(_config_dir() / "containerd.toml") in " ".join(p.info["cmdline"] or [])]


def start() -> None:
    """The course's containerd for nerdctl, started unless it is running."""
    if shutil.which("/usr/lib/cni/bridge") is None and not Path("/usr/lib/cni/bridge").exists():
        raise LabError("the CNI plugins are not installed (nerdctl wires kind's nodes with them)",
                       "sudo apt-get install containernetworking-plugins")
    bins = binaries()
    ROOT.mkdir(parents=True, exist_ok=True)
    snaps = _snapshots()
    netfilter.save_snapshot(snaps["netfilter"])  # both only the first time: the machine as it was
    hostpaths.save_snapshot(snaps["hostpaths"])
    if not MODULES.exists() and not snaps["modules"].exists():
        snaps["modules"].write_text("kind's mount of /lib/modules created it: down removes it\n")
    _write_config()
    if _containerd_pids():
        return
    STATE.mkdir(parents=True, exist_ok=True)
    SOCKET.unlink(missing_ok=True)  # one left by a containerd that died would pass the wait below
    log = (ROOT / "containerd.log").open("ab")
    runtime_path = f"{bins['containerd']}{os.pathsep}{bins['runc']}{os.pathsep}{os.environ.get('PATH', '')}"
    subprocess.Popen([str(bins["containerd"] / "containerd"), "--config", str(_config_dir() / "containerd.toml")],
                     stdout=log, stderr=log, start_new_session=True, env={**os.environ, "PATH": runtime_path})
    deadline = time.monotonic() + 30
    while not SOCKET.exists():
        if time.monotonic() > deadline:
            raise LabError(f"the course's containerd for kind did not start; see {ROOT / 'containerd.log'}",
                           "python -m msalab cluster down; then up again")
        time.sleep(0.2)
    print(f"[kind] nerdctl provider: containerd {spec()['containerd']} at {SOCKET}", flush=True)


def has_image(ref: str) -> bool:
    return nerdctl("image", "inspect", ref, check=False).returncode == 0


def load_from_docker(ref: str) -> None:
    """docker save | nerdctl load: an image built with Docker, into the course's containerd."""
    if has_image(ref):
        return
    save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
    result = subprocess.run([str(binaries()["nerdctl"] / "nerdctl"), "load"], env=env(), stdin=save.stdout,
                            capture_output=True, text=True)
    save.stdout.close()
    if save.wait() != 0 or result.returncode != 0:
        raise LabError(f"loading {ref} into nerdctl failed: {result.stderr.strip()[-300:]}",
                       f"docker image inspect {ref}; then python -m msalab cluster up --provider kind again")


def is_set_up() -> bool:
    return ROOT.exists() or STATE.exists()


def stop() -> list[str]:
    """Everything start and the nodes made on this machine, and nothing else."""
    if not is_set_up():
        return []
    done = []
    bridges = _our_bridges()  # read before `network rm` deletes the files that name them
    if ROOT.exists() and _containerd_pids():
        # While containerd answers: any node `kind delete` did not remove (a shim outlives
        # containerd, and its container with it), then the networks (nerdctl removes their CNI state).
        for container in nerdctl("ps", "-aq", check=False, text=True).stdout.split():
            nerdctl("rm", "-f", "-v", container, check=False)
            done.append(f"container {container}")
        for name in nerdctl("network", "ls", "-q", check=False, text=True).stdout.split():
            nerdctl("network", "rm", name, check=False)
    for pid in _containerd_pids():
        offline.stop_process(pid)
        done.append("containerd (kind's nerdctl provider)")
    shims = hostpaths.shims_of(STATE)  # shims outlive containerd by design
    sockets = hostpaths.shim_sockets(shims)
    for pid in shims:
        offline.stop_process(pid)
    hostpaths.remove_files(sockets)
    unmount_under(STATE, ROOT)
    snaps = _snapshots()
    markers = ("msalab", "nerdctl")
    if snaps["netfilter"].exists():
        for problem in netfilter.restore(snaps["netfilter"], markers):
            print(f"[down] could not remove: {problem}", flush=True)
    for problem in hostpaths.restore(snaps["hostpaths"]):
        print(f"[down] could not remove: {problem}", flush=True)
    for bridge in bridges:
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
    if snaps["modules"].exists() and MODULES.is_dir() and not any(MODULES.iterdir()):
        MODULES.rmdir()
    shutil.rmtree(DEFAULT_STATE / "runc" / NAMESPACE, ignore_errors=True)  # containerd 1.7's runc state
    for folder in (STATE, ROOT):
        shutil.rmtree(folder, ignore_errors=True)
    return done


def _our_bridges() -> list[str]:
    """nerdctl's network bridges (nerdctl0, br-ID), which the CNI bridge plugin never deletes,
    as the network configurations name them (Docker's bridges are br-ID too)."""
    import json

    found = set()
    for conf in (_config_dir() / "net.d").glob("*.conflist"):
        for plugin in json.loads(conf.read_text()).get("plugins", []):
            if plugin.get("type") == "bridge" and plugin.get("bridge"):
                found.add(plugin["bridge"])
    return sorted(found)
