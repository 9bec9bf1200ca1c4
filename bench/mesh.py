"""make bench-mesh (needs the course cluster: make cluster): what the mesh costs, in one run.

- the same product calls from the gateway's pod to the catalog, at 100 a second for 30 s,
  three ways: direct, through a plain Envoy beside the catalog (Part II's sidecar), and
  through the mesh (both sidecars, mutual TLS): latency, and the proxies' CPU per 1,000
  calls a second and memory, with the ratios between them;
- istiod's push time: how long until a proxy has every one of 10, 50 and 100 new Services,
  and istiod's memory after each.
Lab IV.7 shows the same measurement; book/part4/costs.md quotes these figures.
"""

from __future__ import annotations

from bench import print_table
from msalab import k8s, paths
from msalab.mesh import Mesh, cost_of_calls, gateway_and_catalog

RATE, SECONDS = 100, 30
URL = "http://{host}:8080/api/products/p-0001"


def proxy_costs(cluster, mesh) -> dict[str, dict]:
    costs = {}
    ns = gateway_and_catalog(cluster, "bench-mesh-direct")
    costs["direct"] = cost_of_calls(cluster, ns, URL.format(host="catalog"), RATE, SECONDS)
    cluster.delete_namespace(ns)
    ns = gateway_and_catalog(cluster, "bench-mesh-envoy")
    mesh.apply("costs/catalog-plain-envoy.yaml", ns, ENVOY_IMAGE=paths.versions()["cluster"]["envoy"]["image"])
    cluster.wait_rollout(ns, "catalog-envoy")
    costs["plain Envoy"] = cost_of_calls(cluster, ns, URL.format(host="catalog-envoy"), RATE, SECONDS)
    cluster.delete_namespace(ns)
    ns = gateway_and_catalog(cluster, "bench-mesh-sidecars", mesh)
    costs["the mesh"] = cost_of_calls(cluster, ns, URL.format(host="catalog"), RATE, SECONDS)
    cluster.delete_namespace(ns)
    return costs


def push_times(cluster, mesh) -> list[tuple]:
    from msalab.mesh import push_seconds

    ns = gateway_and_catalog(cluster, "bench-mesh-push", mesh)
    rows = []
    try:
        for count in (10, 50, 100):
            seconds = push_seconds(cluster, mesh, ns, count)
            memory = sum(mem for name, (_, mem) in cluster.resource_usage("pods", "istio-system").items()
                         if name.startswith("istiod"))
            rows.append((count, f"{seconds:.2f}", f"{memory:.0f}"))
    finally:
        cluster.delete_namespace(ns)
    return rows


def main() -> int:
    cluster = k8s.Cluster()
    mesh = Mesh(cluster)
    costs = proxy_costs(cluster, mesh)
    keys = ("p50 ms", "p99 ms", "proxy CPU per 1000 calls/s (cores)", "proxy memory MiB", "proxies passed")
    print_table(("calls", *keys), [(way, *(c[k] for k in keys)) for way, c in costs.items()])
    mesh_cpu, envoy_cpu = (costs[w]["proxy CPU per 1000 calls/s (cores)"] for w in ("the mesh", "plain Envoy"))
    print_table(("ratio", "value"), [
        ("p50, mesh / direct", f"{costs['the mesh']['p50 ms'] / costs['direct']['p50 ms']:.2f}"),
        ("p99, mesh / direct", f"{costs['the mesh']['p99 ms'] / costs['direct']['p99 ms']:.2f}"),
        ("p50, plain Envoy / direct", f"{costs['plain Envoy']['p50 ms'] / costs['direct']['p50 ms']:.2f}"),
        ("proxy CPU, mesh / plain Envoy", f"{mesh_cpu / envoy_cpu:.2f}" if envoy_cpu else "n/a"),
        ("proxy memory, mesh / plain Envoy",
         f"{costs['the mesh']['proxy memory MiB'] / costs['plain Envoy']['proxy memory MiB']:.2f}")])
    print_table(("new services", "seconds until the proxy has them all", "istiod memory MiB"), push_times(cluster, mesh))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
