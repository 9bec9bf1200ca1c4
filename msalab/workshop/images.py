"""The workshop's two images, built here as the course's other images are: Debian packages
(debootstrap) for the base, wheels from PyPI, configurable-http-proxy from npm.

- the hub (msalab/workshop-hub): JupyterHub, KubeSpawner, the idle culler, the proxy, the board and
  the kubelet-metrics service;
- a student's server (msalab/workshop-lab): JupyterLab, the course, kubectl, istioctl and Part II's
  components' binaries (the same ones the offline component images hold).

Each is tagged with a hash of everything that goes into it, so a changed lab or pin gives a
new tag (and `workshop up` loads that one), and an unchanged one is not rebuilt.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import engine, images, paths
from ..errors import LabError

WORKSHOP = paths.REPO / "cluster" / "workshop"
# The hub image's own services: the progress board, and the kubelet's metrics for students.
SERVICE_FILES = [Path(__file__).with_name(name) for name in ("board.py", "progress.py", "kubelet_metrics.py")]
# What a student's server needs of the repository: the helper package, the shop (Parts I and
# II run it as processes), the manifests the labs apply, the labs, the pins.
COURSE_PARTS = ("msalab", "lab-services/shop", "lab-services/requirements.txt", "cluster/shop", "cluster/labs",
                "cluster/addons", "labs", "versions.yaml")
# The book's toolchain and the test tools stay out of a student's server.
NOT_IN_LAB_IMAGE = {"jupyter-book", "sphinxcontrib-mermaid", "sphinx-exercise", "playwright", "pytest", "nbval",
                    "pyflakes", "hypothesis", "schemathesis"}


def spec() -> dict:
    return paths.versions()["workshop"]


def hub_requirements() -> str:
    pins = spec()
    return "\n".join([f"jupyterhub=={pins['jupyterhub']}", f"jupyterhub-kubespawner=={pins['kubespawner']}",
                      f"jupyterhub-idle-culler=={pins['idle_culler']}", f"psycopg[binary]=={pins['psycopg']}", ""])


def lab_requirements() -> str:
    """The course's own pins (requirements.txt and the services'), less the book and the tests,
    plus jupyterhub-singleuser of the hub's version: one place for every version."""
    lines = []
    for source in (paths.REPO / "requirements.txt", paths.LAB_SERVICES / "requirements.txt"):
        for line in source.read_text().splitlines():
            requirement = line.split("#")[0].strip()
            if requirement and not requirement.startswith("-r") and requirement.split("==")[0] not in NOT_IN_LAB_IMAGE:
                lines.append(requirement)
    return "\n".join([*lines, f"jupyterhub=={spec()['jupyterhub']}", ""])


def _base(image: dict) -> str:
    """A Debian of the image's packages, imported once (cached in Docker by its package list)."""
    key = hashlib.sha256(f"{image['suite']} {sorted(image['packages'])}".encode()).hexdigest()[:12]
    ref = f"{image['name']}-base:{image['suite']}-{key}"
    if not engine.image_present(ref):
        images.import_rootfs(images.debootstrap(image["suite"], image["packages"]), ref)
    return ref


def _chp() -> Path:
    """configurable-http-proxy with its dependencies (npm install on this machine, cached by version)."""
    version = spec()["configurable_http_proxy"]
    dest = images.cache_dir("npm") / f"configurable-http-proxy-{version}"
    if (dest / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    result = subprocess.run(["npm", "install", "--omit=dev", "--no-audit", "--no-fund", "--prefix", str(dest),
                             f"configurable-http-proxy@{version}"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise LabError(f"npm could not install configurable-http-proxy {version}:\n{result.stderr[-1500:]}",
                       "check that this machine reaches the npm registry (npm ping), then rerun")
    return dest


def _kubectl() -> Path:
    """The cluster's own kubectl build (cached; built with the rest of Kubernetes if missing)."""
    from ..cluster import gobuild, offline
    k8s = offline.spec()["kubernetes"]
    gobuild.build_kubernetes(k8s["version"], k8s["staging_version"], k8s["commands"])
    return offline.kubernetes_bin() / "kubectl"


def _istioctl() -> Path:
    """Part IV's istioctl, of the mesh's version: the one the course cluster's mesh is installed
    with; for a cluster of one's own, the build from the Go module proxy (the same release)."""
    from ..cluster import manage, mesh

    if manage.current_provider() == "external":
        return mesh.build_binaries()["istio"] / "istioctl"
    return mesh.istioctl()


def _digest(*parts: bytes | Path) -> str:
    """A hash of bytes and of files or whole folders (names and contents), for image tags."""
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            sha.update(part)
            continue
        files = sorted(p for p in part.rglob("*") if p.is_file() and "__pycache__" not in p.parts) if part.is_dir() else [part]
        for file in files:
            sha.update(str(file.relative_to(part.parent)).encode() + file.read_bytes())
    return sha.hexdigest()[:12]


def hub_ref() -> str:
    dockerfile = WORKSHOP / "hub.Dockerfile"
    return f"{spec()['hub_image']['name']}:{spec()['jupyterhub']}-{_digest(hub_requirements().encode(), constraints().encode(), dockerfile, *SERVICE_FILES, spec()['configurable_http_proxy'].encode())}"


def lab_ref() -> str:
    course = [paths.REPO / part for part in COURSE_PARTS]
    return f"{spec()['lab_image']['name']}:{paths.versions()['cluster']['kubernetes']['version']}-" \
           f"{_digest(lab_requirements().encode(), constraints().encode(), WORKSHOP / 'lab.Dockerfile', WORKSHOP / 'start-lab', *course)}"


def constraints() -> str:
    """The course's constraints.txt, less the pins Debian's Python cannot install (see versions.yaml)."""
    unpinned = set(spec()["debian_python"]["unpin"])
    return "\n".join(line for line in (paths.REPO / "constraints.txt").read_text().splitlines()
                     if line.split("==")[0].strip() not in unpinned) + "\n"


def _build(ref: str, dockerfile: Path, requirements: str, base: str, fill) -> None:
    """docker build of ref from a fresh context: Dockerfile, requirements.txt, wheels/, and what fill() adds."""
    arch = images.engine_arch()
    with tempfile.TemporaryDirectory(prefix="msalab-workshop-") as folder:
        context = Path(folder)
        (context / "requirements.txt").write_text(requirements)
        (context / "constraints.txt").write_text(constraints())
        wheels, _ = images.wheelhouse_for(context / "requirements.txt", arch, context / "constraints.txt",
                                          spec()["debian_python"]["version"])
        shutil.copytree(wheels, context / "wheels")
        shutil.copy(dockerfile, context / "Dockerfile")
        fill(context)
        engine.build(context, ref, f"fix the error above ({dockerfile.relative_to(paths.REPO)}), then rerun "
                                   "python -m msalab workshop up", buildargs={"BASE_IMAGE": base})


def _remove_older(ref: str) -> None:
    """Older tags of the same image: each is several hundred MB."""
    name = ref.rsplit(":", 1)[0]
    for image in engine.client().images.list(name=name):
        for tag in image.tags:
            if tag != ref:
                engine.client().images.remove(tag, noprune=False)


def build_hub_image() -> str:
    ref = hub_ref()
    if engine.image_present(ref):
        return ref

    def fill(context: Path) -> None:
        shutil.copytree(_chp(), context / "chp", symlinks=True)
        (context / "services").mkdir()
        for source in SERVICE_FILES:
            shutil.copy(source, context / "services" / source.name)

    _build(ref, WORKSHOP / "hub.Dockerfile", hub_requirements(), _base(spec()["hub_image"]), fill)
    _remove_older(ref)
    return ref


def build_lab_image() -> str:
    ref = lab_ref()
    if engine.image_present(ref):
        return ref

    def fill(context: Path) -> None:
        shutil.copy(_kubectl(), context / "kubectl")
        shutil.copy(_istioctl(), context / "istioctl")
        shutil.copy(WORKSHOP / "start-lab", context / "start-lab")
        (context / "components").mkdir()
        for name in images.component_names():  # Part II's components, run as processes there (msalab.componentprocs)
            shutil.copy(images.component_executable(name), context / "components" / name)
        for part in COURSE_PARTS:
            source, target = paths.REPO / part, context / "course" / part
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
            else:
                shutil.copy(source, target)

    _build(ref, WORKSHOP / "lab.Dockerfile", lab_requirements(), _base(spec()["lab_image"]), fill)
    _remove_older(ref)
    return ref
