"""A Kubernetes cluster of the instructor's own (or a learner's), instead of the course cluster.

    export MSALAB_KUBECONFIG=~/.kube/config                 # the cluster
    export MSALAB_REGISTRY=registry.example.com/course      # where its nodes pull the course's images
    python -m msalab workshop up --students 30

The course cluster's nodes are given the images built here directly (kind load, ctr import); a
cluster of one's own pulls them from a registry. So the images are pushed there (docker push,
with the credentials of `docker login`), and every manifest the course applies names them there:
msalab/shop:0.3.0 becomes registry.example.com/course/msalab/shop:0.3.0. Nothing on the
cluster is started or stopped by `cluster up` or `cluster down`: msalab only uses it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import LabError

KUBECONFIG_VARIABLE = "MSALAB_KUBECONFIG"
REGISTRY_VARIABLE = "MSALAB_REGISTRY"
# The images built here are named msalab/...; every other image is left as it is.
COURSE_IMAGE = re.compile(r"""^(\s*-?\s*image:\s*["']?)(msalab/)""", re.MULTILINE)
REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def in_use() -> bool:
    return bool(os.environ.get(KUBECONFIG_VARIABLE))


def kubeconfig() -> str:
    path = Path(os.environ[KUBECONFIG_VARIABLE]).expanduser()
    if not path.is_file():
        raise LabError(f"{KUBECONFIG_VARIABLE}={path}: no such file",
                       f"export {KUBECONFIG_VARIABLE}=<your cluster's kubeconfig>, or unset it to use the course cluster")
    return str(path)


def registry() -> str:
    """Where the cluster pulls the course's images ('' where none is set). Also set in a student's
    server of a workshop on such a cluster, so that the labs' manifests name the same images."""
    value = os.environ.get(REGISTRY_VARIABLE, "").strip().rstrip("/")
    if value and not REGISTRY.match(value):
        raise LabError(f"{REGISTRY_VARIABLE}={value!r} is not a registry and path (like registry.example.com/course)",
                       f"export {REGISTRY_VARIABLE}=registry.example.com/course")
    return value


def image_ref(image: str) -> str:
    """The name the cluster pulls a course image by: in the registry where one is set."""
    prefix = registry()
    return f"{prefix}/{image}" if prefix and image.startswith("msalab/") else image


def rewrite_images(manifest: str) -> str:
    """A manifest's course images (image: msalab/...) named in the registry, where one is set."""
    prefix = registry()
    return COURSE_IMAGE.sub(lambda m: f"{m.group(1)}{prefix}/{m.group(2)}", manifest) if prefix else manifest


def push_images(images: list[str]) -> list[str]:
    """Tag each course image (msalab/...) for the registry and push it: the cluster's nodes pull
    them from there. Other images (a lab's Prometheus, say) are the cluster's to pull from their
    own registries: they are never pushed anywhere."""
    if not registry():
        raise LabError(f"the cluster in {KUBECONFIG_VARIABLE} cannot be given images directly: it pulls them from a registry",
                       f"export {REGISTRY_VARIABLE}=registry.example.com/course   (docker login to it first)")
    docker = _docker_cli()
    pushed = []
    for image in (image for image in images if image.startswith("msalab/")):
        target = image_ref(image)
        for command in ([docker, "tag", image, target], [docker, "push", "--quiet", target]):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise LabError(f"docker {command[1]} {target} failed: {result.stderr.strip()[-300:]}",
                               f"docker login {registry().split('/')[0]}; then rerun the same command")
        pushed.append(target)
    return pushed


def _docker_cli() -> str:
    """docker push sends the credentials of `docker login` (the engine's API would need them passed)."""
    docker = shutil.which("docker")
    if docker is None:
        raise LabError("the docker command is not installed, and it pushes the course's images to the registry",
                       "make docker (or install Docker's CLI), docker login to the registry, then rerun the same command")
    return docker


def forget_pushed_tags(images: list[str]) -> None:
    """The local registry tags push_images made (the images themselves stay)."""
    targets = [image_ref(image) for image in images if image_ref(image) != image]
    if targets and shutil.which("docker"):
        subprocess.run(["docker", "rmi", *targets], capture_output=True, text=True)


def stand_in_registry_binary() -> Path:
    """go-containerregistry's in-memory registry (pinned in versions.yaml, built from the Go
    module proxy): what the course's test, or anyone trying MSALAB_REGISTRY against the offline
    cluster, runs on 127.0.0.1 in place of a real registry."""
    from .. import paths
    from . import gobuild

    pin = paths.versions()["workshop"]["test_registry"]
    return gobuild.go_install("test-registry", pin["package"], pin["version"]) / "registry"
