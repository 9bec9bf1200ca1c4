"""`python -m msalab doctor`: is this machine ready for the labs? Each problem comes with
the command that fixes it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass

import psutil

from . import paths, ports
from .errors import LabError

MIN_FREE_MEMORY_GIB = 2.0
MIN_FREE_DISK_GIB = 5.0
NEEDED_MODULES = ("fastapi", "uvicorn", "httpx", "prometheus_client", "opentelemetry.sdk", "matplotlib",
                  "nbval", "jupyter_book", "docker")


@dataclass
class Finding:
    ok: bool
    what: str
    fix: str = ""
    blocking: bool = True  # False: needed only by later parts (Docker for images)


def python_version() -> Finding:
    ok = sys.version_info >= (3, 11)
    return Finding(ok, f"Python {sys.version.split()[0]} (3.11 or newer needed)",
                   "install Python 3.11+ and run: make setup")


def packages() -> Finding:
    missing = [m for m in NEEDED_MODULES if importlib.util.find_spec(m) is None]
    return Finding(not missing, "course Python packages installed" + (f" (missing: {', '.join(missing)})" if missing else ""),
                   "make setup   (creates .venv from requirements.txt)")


def docker() -> Finding:
    if shutil.which("docker") is None:
        return Finding(False, "Docker is not installed (needed from Part II on: its components run as containers)",
                       "make setup (installs docker.io on Debian/Ubuntu) or install Docker Desktop", blocking=False)
    from . import engine  # imported here: the doctor must run even before the docker package is installed

    try:
        version = engine.info()["ServerVersion"]
    except LabError:
        return Finding(False, "Docker is installed but its engine is not running (needed from Part II on)",
                       engine.DOCKER_FIX, blocking=False)
    return Finding(True, f"Docker engine {version} running", blocking=False)


def memory() -> Finding:
    free = psutil.virtual_memory().available / 2**30
    return Finding(free >= MIN_FREE_MEMORY_GIB, f"{free:.1f} GiB memory available ({MIN_FREE_MEMORY_GIB} GiB needed)",
                   "close other programs, or run python -m msalab shop stop to stop lab services")


def disk() -> Finding:
    free = shutil.disk_usage(paths.state_dir()).free / 2**30
    return Finding(free >= MIN_FREE_DISK_GIB, f"{free:.1f} GiB disk free at {paths.state_dir()} ({MIN_FREE_DISK_GIB} GiB needed)",
                   "free disk space, or make clean to remove what the course built")


def lab_ports() -> list[Finding]:
    findings = []
    for service, numbers in ports.LAB_PORTS.items():
        for port in numbers:
            if not ports.is_free(port):
                findings.append(Finding(False, f"port {port} ({service}) is in use by {ports.who_uses(port)}",
                                        "python -m msalab shop stop   (if a lab left it running); otherwise stop that program"))
    if not findings:
        every = sum(ports.LAB_PORTS.values(), [])
        findings.append(Finding(True, f"lab ports free ({len(every)} ports, {min(every)}-{max(every)})"))
    return findings


def cluster_metrics() -> list[Finding]:
    """With the course cluster up: does metrics-server have numbers (kubectl top, the HPA)?"""
    from .cluster import manage, podmetrics

    if manage.current_provider() is None:
        return []
    try:
        from .k8s import Cluster

        cluster = Cluster()
        if podmetrics.listed_pods(cluster, "kube-system"):
            return [Finding(True, "course cluster: pod metrics available (kubectl top, the HPA)", blocking=False)]
        why = podmetrics.explain(cluster, "kube-system", "", manage.kubelet_log())
    except Exception as err:  # noqa: BLE001: whatever failed, the finding says it
        why = f"{err.__class__.__name__}: {str(err)[:300]}"
    return [Finding(False, "course cluster: metrics-server lists no pod metrics (kubectl top, the HPA need them)\n"
                    + "\n".join("       " + line for line in why.splitlines()), podmetrics.FIX, blocking=False)]


def cluster_provider() -> list[Finding]:
    """Which cluster `make cluster` would bring up here, and why. Nothing is built or started
    (choosing tries to pull kind's node image, which fails at once where no registry answers)."""
    from .cluster import manage, nerdctl

    if shutil.which("docker") is None:
        return []
    running = manage.current_provider()
    if running:
        lines = [f"cluster provider: {running} (the course cluster is up)"]
    else:
        provider, why = manage.choose_provider()
        lines = [f"cluster provider: {provider} ({why})"]
    missing = nerdctl.missing_capabilities()
    # A prediction from the capabilities; `cluster up` tries a privileged container to decide.
    if missing:
        lines.append(f"kind's runtime here: its nerdctl provider on the course's containerd (processes lack "
                     f"{', '.join(missing)}, so Docker's privileged containers, kind's nodes, would fail)")
    else:
        lines.append("kind's runtime here: Docker (no capability is missing for its privileged containers)")
    return [Finding(True, line, blocking=False) for line in lines]


def mesh() -> list[Finding]:
    """With the course cluster up and Istio installed: is the mesh ready (Part IV)?"""
    from .cluster import manage
    from .cluster import mesh as istio

    if manage.current_provider() is None:
        return []
    try:
        if not istio.installed():
            return []  # Part IV's lab IV.1 installs it; nothing is wrong before that
        return [Finding(ok, f"mesh: {what}", fix, blocking=False) for ok, what, fix in istio.status()]
    except Exception as err:  # noqa: BLE001: whatever failed, the finding says it
        return [Finding(False, f"mesh: cannot read its state ({err.__class__.__name__}: {str(err)[:200]})",
                        "python -m msalab mesh status", blocking=False)]


def workshop(students: int | None) -> list[Finding]:
    """`doctor --students N`: can the course cluster hold a workshop of N students?"""
    from .cluster import manage

    if students is None:
        return []
    if manage.current_provider() is None:
        return [Finding(False, f"workshop of {students}: no course cluster is up to measure",
                        "make cluster   (python -m msalab cluster up)")]
    from .cluster import mesh
    from .k8s import Cluster
    from .workshop import deploy

    try:
        deploy.validate(students, [])
        meshed = mesh.installed()  # Part IV's labs need more room: up reserves it when the mesh is there
        cluster = Cluster()
        room = deploy.check_capacity(cluster, students, meshed=meshed)
        if deploy.uses_node_folders(cluster):  # the homes are folders on the course cluster's node
            deploy.check_node_disk(students)
    except LabError as err:
        return [Finding(False, f"workshop of {students}: {err.problem}", err.fix)]
    return [Finding(True, f"workshop of {students}: the cluster holds up to {room['max_students']} students "
                          f"({room['free']['cpu_m']}m CPU and {room['free']['memory_mi']} MiB free; "
                          f"{room['per_student']['cpu_m']}m and {room['per_student']['memory_mi']} MiB each"
                          f"{', with Part IV' if meshed else ''})")]


def run(students: int | None = None) -> int:
    findings = [python_version(), packages(), memory(), disk(), *lab_ports(), docker(), *cluster_provider(), *cluster_metrics(),
                *mesh(), *workshop(students)]
    for f in findings:
        mark = "ok  " if f.ok else ("FAIL" if f.blocking else "warn")
        print(f"[{mark}] {f.what}")
        if not f.ok:
            print(f"       fix: {f.fix}")
    blocking = [f for f in findings if not f.ok and f.blocking]
    print("\nready for the labs" if not blocking else f"\n{len(blocking)} problem(s) to fix before the labs")
    return 1 if blocking else 0
