"""The kind provider (learners): Kubernetes in a Docker container, node image pinned by digest."""

from __future__ import annotations

import shutil
import subprocess
import time

from .. import engine, paths
from ..errors import LabError
from . import gatewayapi, gobuild, ingress

CONFIG = paths.REPO / "cluster" / "kind" / "kind-config.yaml"
ADDONS = paths.REPO / "cluster" / "addons"


def spec() -> dict:
    return paths.versions()["cluster"]["kind"]


def kind_binary() -> str | None:
    found = shutil.which("kind")
    if found:
        return found
    built = gobuild.build_root("kind", spec()["version"]) / "bin" / "kind"
    return str(built) if built.exists() else None


def kubeconfig_path():
    return paths.cluster_dir() / "kind.kubeconfig"


def node_image_available() -> tuple[bool, str]:
    """kind needs its node image: present locally, or pullable. Says why not."""
    image = spec()["node_image"]
    if engine.image_present(image):
        return True, "node image present"
    if engine.pull(image, timeout=120):
        return True, "node image pulled"
    return False, "kind's node image is not here and cannot be pulled (no container registry reachable)"


def up(images: list[str]) -> None:
    binary = kind_binary() or str(gobuild.go_install("kind", "sigs.k8s.io/kind", spec()["version"]) / "kind")
    name, kubeconfig = spec()["cluster_name"], kubeconfig_path()
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    existing = subprocess.run([binary, "get", "clusters"], capture_output=True, text=True).stdout.split()
    started = time.monotonic()
    if name not in existing:
        print(f"[kind] creating cluster {name} from {spec()['node_image']}", flush=True)
        subprocess.run([binary, "create", "cluster", "--name", name, "--config", str(CONFIG),
                        "--image", spec()["node_image"], "--kubeconfig", str(kubeconfig), "--wait", "120s"], check=True)
    else:
        subprocess.run([binary, "export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig)], check=True)
    for image in images:  # the cluster never pulls the course's own images
        subprocess.run([binary, "load", "docker-image", image, "--name", name], check=True, capture_output=True)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise LabError("kubectl is not installed", kubectl_fix())
    subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", "apply", "-f", str(ADDONS / "metrics-server.yaml")],
                   check=True, capture_output=True)

    def run_kubectl(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", *args], check=True, capture_output=True,
                              text=True, input=input_text)

    ingress.install(run_kubectl)
    gatewayapi.install(run_kubectl)
    print(f"[ready] kind cluster up in {time.monotonic() - started:.0f} s; kubeconfig: {kubeconfig}", flush=True)


def kubectl_fix() -> str:
    """kubectl works with an API server one minor either side of its own: name the cluster's."""
    minor = ".".join(paths.versions()["cluster"]["kubernetes"]["version"].lstrip("v").split(".")[:2])
    return f"install kubectl {minor} (https://kubernetes.io/docs/tasks/tools/)"


def down() -> list[str]:
    binary = kind_binary()
    if binary is None:
        return []
    name = spec()["cluster_name"]
    if name in subprocess.run([binary, "get", "clusters"], capture_output=True, text=True).stdout.split():
        subprocess.run([binary, "delete", "cluster", "--name", name], check=True, capture_output=True)
        kubeconfig_path().unlink(missing_ok=True)
        return [f"kind cluster {name}"]
    return []


def is_up() -> bool:
    binary = kind_binary()
    return bool(binary) and spec()["cluster_name"] in subprocess.run(
        [binary, "get", "clusters"], capture_output=True, text=True).stdout.split()
