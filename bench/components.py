"""Part II benchmarks (with Docker): what a sidecar Envoy costs (fortio, as Istio measures)
and the latency an Envoy API gateway adds. Part of `make bench`."""

from __future__ import annotations

import string

from msalab import components, images, load, paths, ports, shop, sidecar, tokens

SIDECAR_QPS, SIDECAR_SECONDS = 1000, 15


def sidecar_cost() -> list[tuple]:
    sidecar.start()
    try:
        rows = sidecar.measure(qps=SIDECAR_QPS, seconds=SIDECAR_SECONDS)
    finally:
        components.stop("envoy")
        components.stop("fortio")
    out = []
    for r in rows:
        cost = (f", Envoy {r['envoy_vcpu_per_1000_rps_per_sidecar']:.3f} vCPU per 1000 req/s per sidecar, "
                f"{r['envoy_memory_mb']:.0f} MiB" if r["sidecars"] else "")
        out.append((f"sidecar cost, fortio {SIDECAR_QPS} req/s 1 KiB 16 conns", r["path"],
                    f"p50/p90/p99 {r['p50_ms']:.3f}/{r['p90_ms']:.3f}/{r['p99_ms']:.3f} ms "
                    f"(added p90 {r['added_p90_ms']:+.3f} ms), {r['qps']:.0f} req/s achieved{cost}"))
    return out


def envoy_gateway_latency() -> tuple:
    port_of = {s: ports.free_port() for s in shop.Microservices.SERVICES}
    deployment = shop.Microservices("bench-envoy", port_of=port_of).start()
    config = (paths.REPO / "labs/part2/configs/envoy-gateway.yaml").read_text()
    for service, default in (("catalog", 8101), ("orders", 8102), ("inventory", 8104)):
        config = config.replace(f"port_value: {default}}}", f"port_value: {port_of[service]}}}")
    try:
        components.start("envoy", config_files={"envoy.yaml": string.Template(config).substitute(jwks=tokens.Signer().jwks())})
        direct, edge = deployment.service_client("inventory"), shop.ShopClient("http://127.0.0.1:10000")
        measured = load.compare_latencies({"direct": lambda: direct.stock("p-0001"), "envoy": lambda: edge.stock("p-0001")},
                                          500, label="direct / envoy")
        plain, via = load.describe(measured["direct"]), load.describe(measured["envoy"])
    finally:
        components.stop("envoy")
        deployment.cleanup()
    return ("Envoy API gateway added latency", "inventory read, p50 / p99",
            f"{via['p50_ms'] - plain['p50_ms']:+.2f} / {via['p99_ms'] - plain['p99_ms']:+.2f} ms "
            f"(direct {plain['p50_ms']:.2f} / {plain['p99_ms']:.2f} ms)")


def rows() -> list[tuple]:
    if not images.docker_available():
        return [("Part II components", "sidecar cost, Envoy gateway", "not measured: Docker is not running (fix: make setup)")]
    return sidecar_cost() + [envoy_gateway_latency()]
