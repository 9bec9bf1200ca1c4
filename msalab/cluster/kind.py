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
    gobuild.require_go(other_way="")  # the add-ons' manifests and Helm come from the Go module proxy
    binary = kind_binary() or str(gobuild.go_install("kind", "sigs.k8s.io/kind", spec()["version"]) / "kind")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise LabError("kubectl is not installed", kubectl_install_hint())
    # Rendered before kind creates anything: a proxy or Helm failure leaves nothing to undo.
    ingress_docs, gateway_docs = ingress.manifests(), gatewayapi.manifests()
    name, kubeconfig = spec()["cluster_name"], kubeconfig_path()
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    existing = subprocess.run([binary, "get", "clusters"], capture_output=True, text=True).stdout.split()
    started = time.monotonic()
    if name not in existing:
        print(f"[kind] creating cluster {name} from {spec()['node_image']}", flush=True)
        subprocess.run([binary, "create", "cluster", "--name", name, "--config", str(CONFIG),
                        "--image", spec()["node_image"], "--kubeconfig", str(kubeconfig), "--wait", "120s"], check=True)
    else:
        _require_port_mappings(name)
        subprocess.run([binary, "export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig)], check=True)
    load_images(images)  # the cluster never pulls the course's own images

    def run_kubectl(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                                text=True, input=input_text)
        if result.returncode != 0:
            raise LabError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()[-400:]}",
                           f"kubectl --kubeconfig={kubeconfig} get pods -A (then describe the pod that is not "
                           "Ready: an image that cannot be pulled is the usual cause)")
        return result

    run_kubectl("apply", "-f", str(ADDONS / "metrics-server.yaml"))
    ingress.install(run_kubectl, ingress_docs)
    gatewayapi.install(run_kubectl, gateway_docs)
    print(f"[ready] kind cluster up in {time.monotonic() - started:.0f} s; kubeconfig: {kubeconfig}", flush=True)


def _require_port_mappings(name: str) -> None:
    """A kind node's port mappings are fixed when it is created: one made by an older course
    version may lack the Gateway's port, and its routes would then be unreachable."""
    cluster = paths.versions()["cluster"]
    node = f"{name}-control-plane"
    for key in ("ingress_host_port", "gateway_host_port"):
        port = cluster[key]
        mapped = subprocess.run(["docker", "port", node, f"{port}/tcp"], capture_output=True, text=True).stdout.strip()
        if not mapped:
            raise LabError(f"the kind cluster {name} does not map port {port} to this machine (it was made "
                           "before the course used that port)",
                           "python -m msalab cluster down; python -m msalab cluster up --provider kind")


def kubectl_install_hint() -> str:
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


def load_images(images: list[str]) -> None:
    """kind load docker-image: copies each image into the node's containerd."""
    binary = kind_binary()
    for image in images:
        subprocess.run([binary, "load", "docker-image", image, "--name", spec()["cluster_name"]], check=True,
                       capture_output=True)
