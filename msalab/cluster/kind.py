"""The kind provider: Kubernetes in a container per node, created by kind itself, unmodified.

Two things depend on the machine, and `doctor` and `cluster up` say which applies and why:
- the node image: kind's published one, pinned by digest, where it is here or can be pulled;
  otherwise the course's own, built from package registries (kindnode.py);
- the container runtime kind drives: Docker where it can run privileged containers; otherwise
  kind's nerdctl provider on a containerd of the course's own (nerdctl.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from .. import engine, paths
from ..errors import LabError
from . import gatewayapi, gobuild, ingress, kindnode, nerdctl, servicerange

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


def kubectl_binary() -> str | None:
    """kubectl on the PATH, else the course's build of it (made with the course's node image)."""
    version = paths.versions()["cluster"]["kubernetes"]["version"]
    built = gobuild.build_root("kubernetes", version) / "bin" / "kubectl"
    return shutil.which("kubectl") or (str(built) if built.exists() else None)


def kubeconfig_path():
    return paths.cluster_dir() / "kind.kubeconfig"


def _setup_record():
    """Which node image and runtime the running cluster uses (for load, down and status)."""
    return paths.cluster_dir() / "kind-setup.json"


def setup() -> dict:
    record = _setup_record()
    return json.loads(record.read_text()) if record.exists() else {}


def node_image_available() -> tuple[bool, str]:
    """kind's published node image: present locally, or pullable. Says why not."""
    image = spec()["node_image"]
    if engine.image_present(image):
        return True, "kind's node image is here"
    if engine.pull(image, timeout=120):
        return True, "kind's node image was pulled"
    return False, "kind's node image is not here and cannot be pulled (no container registry reachable)"


def choose_setup() -> dict:
    """Node image and runtime for this machine, each with the reason."""
    published, why_image = node_image_available()
    if published:
        image, why_image = spec()["node_image"], f"{why_image}: kind's published node image"
    else:
        image = kindnode.build()
        why_image = f"{why_image}: the course's node image {image}"
    privileged, why_runtime = nerdctl.docker_privileged_works(image)
    return {"image": image, "course_node": not published, "runtime": "docker" if privileged else "nerdctl",
            "why": f"{why_image}; {why_runtime}"
                   + ("" if privileged else ": kind's nerdctl provider, on the course's own containerd")}


def kind_env(runtime: str | None = None) -> dict:
    runtime = runtime or setup().get("runtime", "docker")
    return nerdctl.env() if runtime == "nerdctl" else dict(os.environ)


def _kind(*args: str, runtime: str | None = None, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    binary = kind_binary() or str(gobuild.go_install("kind", "sigs.k8s.io/kind", spec()["version"]) / "kind")
    return subprocess.run([binary, *args], env=kind_env(runtime), check=check, capture_output=capture, text=True)


def _config(course_node: bool) -> str:
    """kind's config: the course's file, with the Service range the course's rules name (kind's
    default, written out so that it and versions.yaml cannot part). For the course's node image,
    also what that image needs: CoreDNS is the course's own add-on (the offline cluster's,
    which never asks a resolver outside the machine), so kubeadm does not install its own."""
    config = yaml.safe_load(CONFIG.read_text())
    config.setdefault("networking", {})["serviceSubnet"] = servicerange.service_cidr()
    if course_node:
        config["networking"]["podSubnet"] = kindnode.spec()["pod_subnet"]
        config.setdefault("kubeadmConfigPatches", []).append(yaml.safe_dump(
            {"kind": "InitConfiguration", "skipPhases": ["preflight", "addon/coredns"]}))
    target = paths.cluster_dir() / "kind-config.yaml"
    target.write_text("# Written by msalab.cluster.kind from cluster/kind/kind-config.yaml\n" + yaml.safe_dump(config))
    return str(target)


def up(images: list[str]) -> None:
    gobuild.require_go(other_way="")  # the add-ons' manifests and Helm come from the Go module proxy
    started = time.monotonic()
    # Rendered before kind creates anything: a proxy or Helm failure leaves nothing to undo.
    ingress_docs, gateway_docs = ingress.manifests(), gatewayapi.manifests()
    name, kubeconfig = spec()["cluster_name"], kubeconfig_path()
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    # A cluster that exists keeps its setup; a new one is set up afresh (the node image may
    # have changed since a failed `up`).
    chosen = setup() if is_up() else choose_setup()
    print(f"[kind] node image {chosen['image']}, runtime {chosen['runtime']} ({chosen['why']})", flush=True)
    if kubectl_binary() is None:
        raise LabError("kubectl is not installed", kubectl_install_hint())
    _setup_record().write_text(json.dumps(chosen))
    if chosen["runtime"] == "nerdctl":
        nerdctl.start()
        nerdctl.load_from_docker(chosen["image"])
    if chosen["course_node"]:
        images = _local_addon_images() + images  # nothing can be pulled: load what the add-ons run
    if name not in _kind("get", "clusters").stdout.split():
        print(f"[kind] creating cluster {name}", flush=True)
        _kind("create", "cluster", "--name", name, "--config", _config(chosen["course_node"]), "--image",
              chosen["image"], "--kubeconfig", str(kubeconfig), "--wait", "180s", capture=False)
    else:
        _require_port_mappings(name, chosen["runtime"])
        _kind("export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig))
    # Also on a node that exists (made before the rules were), and at each of its boots.
    node_shell(servicerange.install_on_node_command())
    load_images(images)  # the cluster never pulls the course's own images

    def run_kubectl(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([kubectl_binary(), f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                                text=True, input=input_text)
        if result.returncode != 0:
            raise LabError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()[-400:]}",
                           f"kubectl --kubeconfig={kubeconfig} get pods -A (then describe the pod that is not "
                           "Ready: an image that cannot be pulled is the usual cause)")
        return result

    if chosen["course_node"]:
        run_kubectl("apply", "-f", str(ADDONS / "offline"))
    run_kubectl("apply", "-f", str(ADDONS / "metrics-server.yaml"))
    ingress.install(run_kubectl, ingress_docs)
    gatewayapi.install(run_kubectl, gateway_docs)
    print(f"[ready] kind cluster up in {time.monotonic() - started:.0f} s; kubeconfig: {kubeconfig}", flush=True)


def _local_addon_images() -> list[str]:
    """The add-ons' images, built here as the offline cluster builds them (cached)."""
    from . import offline

    return offline.addon_images()


def _container_tool(runtime: str | None) -> str:
    """The command that reaches the node containers of this runtime."""
    return str(nerdctl.binaries()["nerdctl"] / "nerdctl") if runtime == "nerdctl" else "docker"


def _require_port_mappings(name: str, runtime: str) -> None:
    """A kind node's port mappings are fixed when it is created: one made by an older course
    version may lack the Gateway's port, and its routes would then be unreachable."""
    cluster = paths.versions()["cluster"]
    node = f"{name}-control-plane"
    tool = [_container_tool(runtime)]
    for key in ("ingress_host_port", "gateway_host_port"):
        port = cluster[key]
        mapped = subprocess.run([*tool, "port", node, f"{port}/tcp"], capture_output=True, text=True,
                                env=kind_env(runtime)).stdout.strip()
        if not mapped:
            raise LabError(f"the kind cluster {name} does not map port {port} to this machine (it was made "
                           "before the course used that port)",
                           "python -m msalab cluster down; python -m msalab cluster up --provider kind")


def kubectl_install_hint() -> str:
    """kubectl works with an API server one minor either side of its own: name the cluster's."""
    minor = ".".join(paths.versions()["cluster"]["kubernetes"]["version"].lstrip("v").split(".")[:2])
    return f"install kubectl {minor} (https://kubernetes.io/docs/tasks/tools/)"


def down() -> list[str]:
    """The cluster, its nodes, and (nerdctl provider) the course's containerd, its network and state."""
    removed = []
    name = spec()["cluster_name"]
    try:
        for runtime in ("docker", "nerdctl"):
            if kind_binary() is None or not (engine.docker_available() if runtime == "docker" else nerdctl.is_set_up()):
                continue
            if runtime == "nerdctl":
                nerdctl.start()  # kind deletes its nodes through nerdctl, which needs the containerd
            if name in _kind("get", "clusters", runtime=runtime, check=False).stdout.split():
                deleted = _kind("delete", "cluster", "--name", name, runtime=runtime, check=False)
                if deleted.returncode == 0:
                    removed.append(f"kind cluster {name} ({runtime})")
                else:
                    print(f"[down] kind delete cluster ({runtime}) failed: {deleted.stderr.strip()[-300:]}", flush=True)
    finally:
        # Whatever failed above: the course's containerd for nerdctl removes any node left.
        if nerdctl.is_set_up():
            removed += nerdctl.stop()
        kubeconfig_path().unlink(missing_ok=True)
        _setup_record().unlink(missing_ok=True)
    return removed


def node_shell(command: str) -> str:
    """A shell command on the cluster's node (a container of the recorded runtime); what it printed."""
    node = f"{spec()['cluster_name']}-control-plane"
    result = subprocess.run([_container_tool(setup().get("runtime")), "exec", node, "sh", "-c", command],
                            capture_output=True, text=True, env=kind_env())
    if result.returncode != 0:
        raise LabError(f"on the cluster's node, `{command}` failed: {result.stderr.strip()[-300:]}",
                       "python -m msalab cluster status; then python -m msalab cluster up --provider kind")
    return result.stdout


def is_up() -> bool:
    """The recorded setup's cluster exists (its runtime answers and lists it)."""
    runtime = setup().get("runtime")
    if not runtime or kind_binary() is None or (runtime == "nerdctl" and not nerdctl.is_set_up()):
        return False
    return spec()["cluster_name"] in _kind("get", "clusters", runtime=runtime, check=False).stdout.split()


def load_images(images: list[str]) -> None:
    """kind load image-archive: one `docker save` of all of them (shared layers once), copied
    into the node's containerd by kind, as a learner would load an image built on their machine."""
    if not images:
        return
    with tempfile.TemporaryDirectory(prefix="msalab-kind-load-") as folder:
        archive = f"{folder}/images.tar"
        kindnode.save_images(images, Path(archive))
        result = _kind("load", "image-archive", archive, "--name", spec()["cluster_name"], check=False)
    if result.returncode != 0:
        raise LabError(f"kind load image-archive failed: {(result.stderr or '').strip()[-300:]}",
                       "python -m msalab cluster status; then python -m msalab cluster up --provider kind")
    print(f"[images] {len(images)} image(s) loaded into the kind node", flush=True)
