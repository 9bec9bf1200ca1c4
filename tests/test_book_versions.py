"""The version numbers the book and the README print are the pinned ones (versions.yaml).

Pages print the course's versions with MyST substitutions ({{ kubernetes }}, filled in by
book/_ext/course_versions.py). A number written by hand next to a pinned component's name is
either that component's pin, or history that a page tells on purpose ("stable since 1.33"),
listed below with its reason. A new hand-written version fails here until it is one or the
other, so moving a pin can never leave the text behind.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book" / "_ext"))
import course_versions  # noqa: E402

PINS = course_versions.substitutions(yaml.safe_load((REPO / "versions.yaml").read_text()))

# How the text names each pinned component -> its substitution.
NAMES = {
    "Kubernetes": "kubernetes", "kubelet": "kubernetes", "containerd": "containerd", "runc": "runc",
    "etcd": "etcd", "CoreDNS": "coredns", "metrics-server": "metrics_server", "Contour": "contour",
    "Gateway API": "gateway_api", "Envoy": "envoy", "kind": "kind", "Python": "python",
    "Go": "go", "kubectl": "kubernetes", "Envoy Gateway": "envoy_gateway", "Helm": "helm", "Istio": "istio",
    "JupyterHub": "jupyterhub", "KubeSpawner": "kubespawner", "kube-router": "kube_router",
}
# Components with a second pin for another role: etcd in the course's kind node, containerd
# under kind's nerdctl provider.
ALSO = {"etcd": ["kind_node_etcd"], "containerd": ["nerdctl_containerd"]}
# A mention: "kubectl 1.36", or "**kubectl** 1.36" where the name is in bold.
MENTION = re.compile(r"\b(" + "|".join(re.escape(n) for n in NAMES) + r")(?:\*\*)?\s+(?:version\s+)?v?(\d+\.\d+(?:\.\d+)?)\b")

# Deliberate history: (file, the words around the number) -> why it is not the pin.
HISTORY = {
    ("book/part3/services.md", "since Kubernetes 1.21"): "when EndpointSlices became GA",
    ("book/part3/services.md", "since Kubernetes 1.33"): "when the Endpoints API was deprecated",
    ("book/part3/services.md", "stable in Kubernetes 1.33"): "when kube-proxy's nftables mode became stable",
    ("book/part3/pods.md", "since Kubernetes 1.29"): "when native sidecars were turned on by default",
    ("book/part2/centralized-monitoring.md", "Kubernetes 1.13"): "the release that dropped Heapster",
    ("book/part3/monitoring.md", "around Kubernetes 1.11"): "when Heapster was deprecated",
    ("book/part3/controllers.md", "Kubernetes 1.30 and later"): "since when preStop's sleep action is on by default",
    ("book/appendix/instructors.md", "Python 3.9"): "what older machines have, and why the course needs more",
    ("book/part3/ingress-and-gateway-api.md", "taught Gateway API v1.3"): "the version earlier editions taught",
    ("book/appendix/setup.md", "| Kubernetes 1.33, containerd 1.6,"): "the cluster measured before the move to 1.36",
    ("book/part3/ingress-and-gateway-api.md", "implements Gateway API v1.3"): "what Contour's newest release implements",
    ("book/part3/ingress-and-gateway-api.md", "needs Go 1.27"): "what Gateway API v1.7's Go module needs",
    ("book/part3/ingress-and-gateway-api.md", "the Kubernetes 1.37 libraries"): "what Gateway API v1.7's Go module needs",
    ("book/part2/resilience.md", "Istio 1.24 the default no longer retries"): "when Istio's default retry policy changed",
    ("book/part2/service-mesh.md", "generally available in Istio 1.24"): "when ambient mode became GA",
    ("book/part2/service-mesh.md", "Istio 1.16.2) stated"): "the release of an older published performance figure",
    ("book/part2/service-mesh.md", "measured on **Istio 1.24**"): "the release of Istio's newest published performance figures",
    ("book/part2/service-mesh.md", "Using Istio 1.24's figures"): "the release of Istio's newest published performance figures",
    ("book/part4/index.md", "Since **Istio 1.5 (2020)**"): "when istiod replaced Pilot, Mixer, Citadel and Galley",
    ("book/part4/index.md", "**removed in Istio 1.8**"): "when Mixer was removed",
    ("book/part4/index.md", "stable since Istio 1.24"): "when ambient mode became GA",
    ("book/part4/architecture.md", "Since Istio 1.5 (2020)"): "when istiod replaced Pilot, Citadel, Galley and the injector",
    ("book/part4/architecture.md", "removed in Istio 1.8"): "when Mixer was removed",
    ("book/part4/interception.md", "by default since Istio 1.27"): "when native sidecars became Istio's default",
    ("book/part4/interception.md", "kubelet is Kubernetes 1.33"): "the kubelet release Istio's injector requires for native sidecars",
    ("book/part4/interception.md", "on nodes of Kubernetes 1.33"): "the kubelet release Istio's injector requires for native sidecars",
    ("book/part4/interception.md", "available since Istio 1.24"): "when ambient mode became GA",
    ("book/part4/traffic-management.md", "Since Istio 1.28 istiod tells Envoy"): "when mirrored requests stopped getting -shadow",
    ("book/part4/traffic-management.md", "since Istio 1.28 their host"): "when mirrored requests stopped getting -shadow",
    ("book/part4/traffic-management.md", "available since Gateway API v1.1"): "when GAMMA (routes on a Service) became Standard",
    ("book/part4/resilience.md", "Before Istio 1.24 the default retry policy"): "when Istio's default retry policy stopped retrying 503",
    ("book/part4/costs.md", "| Istio 1.16.2 (the same figures on the pages"): "the release of an older published performance figure",
    ("book/part4/costs.md", "| Istio 1.24 (the current page's summary)"): "the release of Istio's newest published performance figures",
    ("book/part4/costs.md", "(Istio 1.24's latency charts"): "the release of Istio's newest published performance figures",
    ("book/part4/costs.md", "With Istio 1.24's published figures"): "the release of Istio's newest published performance figures",
    ("book/part4/costs.md", "at p90 for Istio 1.16.2)"): "the release of an older published performance figure",
    ("book/part4/costs.md", "Using Istio 1.24's published figures"): "the release of Istio's newest published performance figures",
    ("book/part4/costs.md", "2.65 ms (Istio 1.16.2, at p90)"): "the release of an older published performance figure",
    ("book/part4/costs.md", "at p90 for Istio 1.16.2 (and the pages"): "the release of an older published performance figure",
    ("book/part4/costs.md", "12 MB per ztunnel for Istio 1.24."): "the release of Istio's newest published performance figures",
}


def pages() -> list[Path]:
    return sorted(REPO.glob("book/**/*.md")) + [REPO / "README.md"]


def flatten(text: str) -> tuple[str, list[int]]:
    """The text with each run of whitespace as one space (a phrase can cross a line break),
    and the line each of its characters comes from."""
    flat, line_of, line = [], [], 1
    for char in text:
        if char.isspace():
            if not flat or flat[-1] != " ":
                flat.append(" ")
                line_of.append(line)
            line += char == "\n"
        else:
            flat.append(char)
            line_of.append(line)
    return "".join(flat), line_of


def mentions(path: Path):
    """(line number, the words around it, match) for each version next to a pinned name."""
    flat, line_of = flatten(path.read_text())
    for match in MENTION.finditer(flat):
        yield line_of[match.start()], flat[max(0, match.start() - 80): match.end() + 80], match


def is_pinned(component: str, version: str) -> bool:
    pins = [PINS[NAMES[component]], *(PINS[key] for key in ALSO.get(NAMES[component], []))]
    return any(pin == version or pin.startswith(version + ".") for pin in pins)  # "1.36" names the pinned 1.36.3


def is_history(path: Path, line: str) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == file and words in line for file, words in HISTORY)


@pytest.mark.parametrize("path", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_version_written_by_hand_is_the_pin_or_named_history(path):
    wrong = [f"line {n}: {m.group(0)!r} (pinned: {PINS[NAMES[m.group(1)]]})"
             for n, line, m in mentions(path) if not is_pinned(m.group(1), m.group(2)) and not is_history(path, line)]
    assert not wrong, (f"{path.relative_to(REPO)} writes versions that are not the pins: {wrong}. Use a "
                       "substitution such as {{ kubernetes_minor }} (book/_ext/course_versions.py), or add it "
                       "to HISTORY in this test with the reason")


def test_every_named_history_is_still_in_the_text():
    """A HISTORY entry whose words left the page would silently excuse a new mistake."""
    stale = [(file, words) for file, words in HISTORY
             if words not in flatten((REPO / file).read_text())[0]]
    assert not stale, stale


def test_substitutions_used_by_pages_exist():
    used = {name for path in pages() for name in re.findall(r"\{\{\s*(\w+)\s*\}\}", path.read_text())}
    assert used, "no page prints a version from versions.yaml"
    assert used <= set(PINS), f"pages use substitutions that course_versions does not define: {used - set(PINS)}"


def test_the_checker_catches_a_stale_version(tmp_path):
    """The pattern finds the forms the pages use, so a moved pin cannot hide."""
    page = tmp_path / "page.md"
    page.write_text("runs on Kubernetes 1.33 with containerd 1.6.20 and Gateway API v1.2\n")
    found = [(m.group(1), m.group(2)) for _, _, m in mentions(page)]
    assert found == [("Kubernetes", "1.33"), ("containerd", "1.6.20"), ("Gateway API", "1.2")]
    assert not any(is_pinned(c, v) for c, v in found)
