"""make bench: the Part I baselines, printed as a table.

- memory per running copy: the whole monolith vs each microservice (RSS after warm-up);
- order latency p50/p99 at a fixed request rate, monolith vs microservices (the network tax);
- requests per second of the catalog service pinned to one core (wrk on the other core);
- the gateway's added latency on a product lookup (sequential requests, no queueing);
- Part II (needs Docker): a sidecar Envoy's latency, CPU and memory under fortio at
  1000 req/s, and the latency an Envoy API gateway adds;
- Part IV (needs the course cluster up): the mesh's cost and istiod's push time (bench/mesh.py);
- workshops (needs the course cluster up): students per 2 CPUs and 4 GiB, login to a ready
  server (bench/workshop.py).
All traffic goes to 127.0.0.1. No targets yet: later work is compared with these figures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench import print_table
from msalab import load, ports, shop

ORDER_RATE_PER_S = 20
ORDER_SECONDS = 15
WRK_SECONDS = 10


def warm_up(client: shop.ShopClient, n: int = 200) -> None:
    for i in range(n):
        client.product(f"p-{i % 50 + 1:04d}") if i % 2 else client.order({"p-0001": 1})


def memory_and_orders() -> list[tuple]:
    rows = []
    mono = shop.Monolith("bench-monolith", port=ports.free_port()).start()
    micro = shop.Microservices("bench-microservices",
                               port_of={s: ports.free_port() for s in shop.Microservices.SERVICES}).start()
    try:
        warm_up(mono.client)
        warm_up(micro.client)
        rows.append(("memory per copy", "monolith (whole shop)", f"{mono.memory_mb()['monolith']:.1f} MiB"))
        for name, mib in micro.memory_mb().items():
            rows.append(("memory per copy", f"microservice {name}", f"{mib:.1f} MiB"))
        rows.append(("memory per copy", "microservices, all five", f"{sum(micro.memory_mb().values()):.1f} MiB"))
        for label, deployment in (("monolith", mono), ("microservices", micro)):
            client = deployment.client
            result = load.run(lambda: client.order({"p-0002": 1}), ORDER_RATE_PER_S, ORDER_SECONDS, label)
            if result.failed:
                raise SystemExit(f"{len(result.failed)} orders failed during the benchmark: {result.failed[0]}")
            rows.append((f"order latency at {ORDER_RATE_PER_S}/s", f"{label} p50 / p99",
                         f"{result.percentile(50):.2f} / {result.percentile(99):.2f} ms ({result.total} orders)"))
        catalog = micro.service_client("catalog")
        measured = load.compare_latencies({"direct": lambda: catalog.product("p-0001"),
                                           "gateway": lambda: micro.client.product("p-0001")}, 500, label="direct / gateway")
        direct, via = load.describe(measured["direct"]), load.describe(measured["gateway"])
        rows.append(("gateway added latency", "p50 / p99",
                     f"{via['p50_ms'] - direct['p50_ms']:+.2f} / {via['p99_ms'] - direct['p99_ms']:+.2f} ms "
                     f"(direct {direct['p50_ms']:.2f} / {direct['p99_ms']:.2f} ms)"))
    finally:
        mono.cleanup()
        micro.cleanup()
    return rows


def catalog_rps() -> tuple:
    """The catalog alone on CPU 0; the load generator on CPU 1 so it does not steal the core."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return ("catalog throughput", "1 core", "not measured: wrk is missing (fix: apt-get install wrk)")
    with tempfile.TemporaryDirectory() as data:
        proc = shop.ServiceProcess("catalog", "catalog", ports.free_port(), data_dir=__import__("pathlib").Path(data),
                                   deployment="bench").start()
        try:
            proc.wait_ready()
            can_pin = hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() >= 2
            if can_pin:
                os.sched_setaffinity(proc.pid, {0})
            command = ([] if not can_pin else ["taskset", "-c", "1"]) + [
                wrk, "-t1", "-c16", f"-d{WRK_SECONDS}s", f"{proc.url}/api/products/p-0001"]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        finally:
            proc.stop()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)
    latency = re.search(r"Latency\s+(\S+)", output).group(1)
    where = "pinned to 1 core" if can_pin else "not pinned (fewer than 2 cores)"
    return ("catalog throughput", f"GET /api/products/ID, {where}", f"{float(rps):.0f} req/s (mean latency {latency}, 16 connections)")


def main() -> int:
    os.environ.setdefault("MSALAB_NO_PROGRESS", "1")
    from bench import components

    print_table(("benchmark", "what", "result"), memory_and_orders() + [catalog_rps()] + components.rows())
    from msalab.cluster import manage

    if manage.current_provider() is None:  # the mesh and the workshop need the course cluster
        print("\nthe mesh's cost and the workshop's capacity: not measured, no course cluster is up "
              "(make cluster, then make bench-mesh bench-workshop)")
        return 0
    from bench import mesh, workshop

    return mesh.main() or workshop.main()


if __name__ == "__main__":
    sys.exit(main())
