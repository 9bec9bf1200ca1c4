"""What a sidecar costs (Lab II.9 and `make bench`), measured as Istio measures it: fortio
sends a fixed rate of requests with 1 KiB answers over 16 connections to fortio's echo
server, directly, through one Envoy sidecar, and through two (client's and server's).

    results = sidecar.measure(qps=1000, seconds=15)   # one row per path
"""

from __future__ import annotations

import json

from . import components, paths

CONFIG = paths.REPO / "labs" / "part2" / "configs" / "envoy-sidecars.yaml"
# Istio's published figures: docs for 1.12-1.15 (sidecar, 1000 rps, 1 KiB, 16 connections,
# both sidecars, mTLS and telemetry on) and the current page (1.24).
ISTIO_2022 = {"vcpu_per_1000_rps": 0.35, "memory_mb": 40, "added_p90_ms": 2.65}
ISTIO_1_24 = {"vcpu_per_1000_rps": 0.20, "memory_mb": 60}
PATHS = {"no sidecar": ("app", 0), "1 sidecar": ("inbound", 1), "2 sidecars": ("outbound", 2)}


def start() -> tuple[components.Component, components.Component]:
    """fortio's echo server and the sidecar Envoy (both replaced if they were running)."""
    server = components.start("fortio")
    envoy = components.start("envoy", config_files={"envoy.yaml": CONFIG})
    return server, envoy


def _url(hop: str) -> str:
    port = {"app": components.spec("fortio")["ports"]["http"], "inbound": 10002, "outbound": 10001}[hop]
    return f"http://127.0.0.1:{port}/echo?size=1024"


def load(hop: str, qps: int, seconds: int, connections: int = 16) -> dict:
    """One fortio run; its JSON report, reduced to what the lab and the benchmark use."""
    report = json.loads(components.run_once("fortio", [
        "load", "-qps", str(qps), "-c", str(connections), "-t", f"{seconds}s", "-p", "50,90,99",
        "-json", "-", "-quiet", _url(hop)], timeout=seconds + 120))
    percentiles = {f"p{int(p['Percentile'])}_ms": p["Value"] * 1000 for p in report["DurationHistogram"]["Percentiles"]}
    ok = report["RetCodes"].get("200", 0)
    return {"qps": report["ActualQPS"], "requests": report["DurationHistogram"]["Count"], "ok": ok, **percentiles}


def measure(qps: int = 1000, seconds: int = 15, connections: int = 16) -> list[dict]:
    """Every path, one after the other, with the Envoy's CPU and memory for each run."""
    components.require("fortio")
    envoy = components.require("envoy")
    load("app", qps, 2, connections)  # warm-up: connections, caches
    rows = []
    for name, (hop, sidecars) in PATHS.items():
        cpu_before = envoy.cpu_seconds()
        result = load(hop, qps, seconds, connections)
        vcpu = (envoy.cpu_seconds() - cpu_before) / seconds
        rows.append({"path": name, "sidecars": sidecars, **result,
                     "envoy_vcpu_per_1000_rps_per_sidecar": vcpu / sidecars * 1000 / result["qps"] if sidecars else 0.0,
                     "envoy_memory_mb": envoy.memory_mb()})
    base = rows[0]
    for row in rows:
        for p in ("p50", "p90", "p99"):
            row[f"added_{p}_ms"] = row[f"{p}_ms"] - base[f"{p}_ms"]
    return rows
