"""make bench-cluster: the two cluster providers side by side, measured in one run.

    python -m bench.cluster           # cold build (as recorded when each piece was first built),
                                      # warm `up`, idle memory, pod start, a request through the
                                      # Ingress, `down`: offline, then kind
    python -m bench.cluster --cold    # also rebuild the offline cluster's components from empty caches

Targets (offline cluster issue): warm up <= 60 s, idle <= 1.5 GiB, cold build <= 35 min.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from bench import print_table
from msalab import paths
from msalab.cluster import kind, kindnode, manage, nerdctl, offline

SETTLE_S = 60  # let the controllers and the pods settle before reading idle memory
PROVIDERS = ("offline", "kind")
PAUSE_PODS = 3
REQUESTS = 200
INGRESS = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench}
spec:
  ingressClassName: contour
  rules:
    - host: bench.ingress.test
      http:
        paths:
          - {path: /api/products, pathType: Prefix, backend: {service: {name: catalog, port: {name: http}}}}
"""


def pinned_builds(provider: str) -> list[str]:
    """The Go builds (cache folder names NAME-VERSION) each provider needs at the pinned versions."""
    s = offline.spec()
    shared = {"kubernetes": s["kubernetes"]["version"], "containerd": s["containerd"]["version"],
              "runc": s["runc"]["version"], "pause": "1", "coredns": s["coredns"]["version"],
              "metrics-server": s["metrics-server"]["version"], "contour": s["contour"]["version"],
              "envoy-gateway": s["envoy-gateway"]["version"], "helm": s["helm"]["version"]}
    if provider == "offline":
        names = [f"{n}-{v}" for n, v in shared.items()] + [f"etcd-{s['etcd']['version']}"]
    else:
        k = kind.spec()
        names = [f"{n}-{v}" for n, v in shared.items()] + [
            f"etcd-{k['course_node']['etcd']}", f"kind-{k['version']}", f"nerdctl-{k['nerdctl']['version']}",
            f"containerd-{k['nerdctl']['containerd']}"]
    return names


def recorded_build_seconds(provider: str) -> float:
    """How long its builds took when they were made (each `complete` marker); NaN if one is missing."""
    total = 0.0
    for build in pinned_builds(provider):
        marker = paths.cache_dir() / "go" / build / "complete"
        words = marker.read_text().split() if marker.exists() else []
        if len(words) < 3 or not words[2].isdigit():
            return float("nan")
        total += float(words[2])
    if provider == "kind":
        total += kindnode.recorded_build_seconds()
    return total


def cold_build() -> float:
    """The offline cluster's components from empty Go caches (modules downloaded again)."""
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.update(GOCACHE=f"{scratch}/build", GOMODCACHE=f"{scratch}/mod", MSALAB_CACHE=f"{scratch}/msalab")
        started = time.monotonic()
        offline.build_all()
        from msalab.cluster import gatewayapi, ingress

        ingress.contour_binary()
        gatewayapi.envoy_gateway_binary()
        gatewayapi.helm_binary()
        elapsed = time.monotonic() - started
        subprocess.run(["chmod", "-R", "u+w", scratch])  # the module cache is read-only
    for key in ("GOCACHE", "GOMODCACHE", "MSALAB_CACHE"):
        os.environ.pop(key)
    return elapsed


def _tree_rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return 0


def cluster_memory_mib(provider: str) -> float:
    """RSS of every process the cluster runs on this machine: the offline cluster's host
    processes and pods; for kind, its runtime (nerdctl's containerd, if used) and every process
    of the node container (systemd, containerd, the kubelet, the pods)."""
    total = 0
    if provider == "offline":
        total += sum(psutil.Process(pid).memory_info().rss for pid in offline._running().values())
        marker = str(offline.CONTAINERD_STATE)
    elif kind.setup().get("runtime") == "nerdctl":
        marker = str(nerdctl.STATE)
    else:  # Docker's shim names the container: the node's, not every container Docker runs
        node = f"{kind.spec()['cluster_name']}-control-plane"
        marker = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", node], capture_output=True, text=True).stdout.strip()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "containerd-shim" in cmdline and marker in cmdline:
            total += _tree_rss(proc)
        elif provider == "kind" and str(nerdctl.ROOT) in cmdline and "containerd" in cmdline:
            total += _tree_rss(proc)
    return total / 2**20


def pod_start_seconds(cluster, namespace: str) -> float:
    """Median time from `kubectl run` to a Ready pod (the pause image: both have it, no pull)."""
    image = paths.versions()["cluster"]["pause"]["image"]
    times = []
    for i in range(PAUSE_PODS):
        started = time.monotonic()
        cluster.kubectl("run", f"bench-{i}", "-n", namespace, f"--image={image}", "--restart=Never",
                        "--image-pull-policy=Never")
        cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"pod/bench-{i}", "--timeout=120s")
        times.append(time.monotonic() - started)
    return statistics.median(times)


def ingress_latency_ms(cluster, namespace: str) -> tuple[float, float]:
    """p50 and p95 of REQUESTS GETs from this machine through the Ingress to the catalog."""
    import httpx

    from msalab import k8s

    cluster.deploy_shop(namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=INGRESS)
    url = f"{k8s.ingress_url()}/api/products/p-0001"
    headers = {"Host": "bench.ingress.test"}

    def routed() -> bool:
        try:
            return httpx.get(url, headers=headers, timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    cluster.wait_until(routed, "the Ingress route to the catalog", 90, every_s=2)
    samples = []
    with httpx.Client(headers=headers, timeout=5) as client:
        for _ in range(REQUESTS):
            started = time.perf_counter()
            client.get(url).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def measure(provider: str) -> dict[str, str]:
    from msalab.k8s import Cluster

    if manage.current_provider():
        manage.down()
    started = time.monotonic()
    manage.up(provider)
    result = {"up": f"{time.monotonic() - started:.0f} s"}
    time.sleep(SETTLE_S)
    result["memory"] = f"{cluster_memory_mib(provider):.0f} MiB"
    cluster = Cluster()
    namespace = cluster.fresh_namespace("bench")
    result["pod"] = f"{pod_start_seconds(cluster, namespace):.1f} s"
    p50, p95 = ingress_latency_ms(cluster, namespace)
    result["latency"] = f"{p50:.1f} / {p95:.1f} ms"
    started = time.monotonic()
    manage.down()
    result["down"] = f"{time.monotonic() - started:.0f} s"
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="rebuild the offline cluster's components from empty caches")
    args = parser.parse_args()
    cold = {p: f"{recorded_build_seconds(p):.0f} s" for p in PROVIDERS}
    if args.cold:
        cold["offline"] = f"{cold_build():.0f} s (measured now)"
    results = {p: measure(p) for p in PROVIDERS}
    rows = [("cold build, every piece (each as last built: warm rebuilds record less)", cold["offline"], cold["kind"],
             "<= 2100 s"),
            ("warm `cluster up`, to every add-on Ready", results["offline"]["up"], results["kind"]["up"], "<= 60 s"),
            (f"idle memory, whole cluster ({SETTLE_S} s after up)", results["offline"]["memory"],
             results["kind"]["memory"], "<= 1536 MiB"),
            (f"pod start, `kubectl run` to Ready (median of {PAUSE_PODS})", results["offline"]["pod"],
             results["kind"]["pod"], "-"),
            (f"GET through the Ingress to the catalog, p50 / p95 of {REQUESTS}", results["offline"]["latency"],
             results["kind"]["latency"], "-"),
            ("`cluster down`", results["offline"]["down"], results["kind"]["down"], "-")]
    kind_setup = "kind: the course's node image, nerdctl provider" if nerdctl.missing_capabilities() else "kind"
    print_table(("benchmark", "offline", kind_setup, "target"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
