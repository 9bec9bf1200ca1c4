"""make bench-cluster: the offline cluster's build, start, stop and idle memory.

    python -m bench.cluster           # warm `up`, idle memory, `down`; cold build from the
                                      # times recorded when each component was first built
    python -m bench.cluster --cold    # also rebuild every component from empty caches

Targets (issue: offline cluster): warm up <= 60 s, idle <= 1.5 GiB, cold build <= 35 min.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import psutil

from bench import print_table
from msalab import paths
from msalab.cluster import manage, offline

SETTLE_S = 60  # let the controllers and the pods settle before reading idle memory


def pinned_builds() -> list[str]:
    """The cluster's Go builds at the pinned versions (cache folder names NAME-VERSION): the
    cache also holds other versions and Part II's components, which a cluster build never makes."""
    s = offline.spec()
    names = {"kubernetes": s["kubernetes"]["version"], "etcd": s["etcd"]["version"], "coredns": s["coredns"]["version"],
             "metrics-server": s["metrics-server"]["version"], "containerd": s["containerd"]["version"],
             "runc": s["runc"]["version"], "contour": s["contour"]["version"], "pause": "1",
             "envoy-gateway": s["envoy-gateway"]["version"], "helm": s["helm"]["version"]}
    return [f"{name}-{version}" for name, version in names.items()]


def recorded_build_seconds() -> dict[str, float]:
    """How long each pinned build took when it was made (its `complete` marker); NaN if not built."""
    times = {}
    for build in pinned_builds():
        marker = paths.cache_dir() / "go" / build / "complete"
        words = marker.read_text().split() if marker.exists() else []
        times[build] = float(words[2]) if len(words) > 2 and words[2].isdigit() else float("nan")
    return times


def cold_build() -> float:
    """Every component from empty Go caches (modules downloaded again, nothing compiled)."""
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


def cluster_memory_mib() -> float:
    """RSS of every cluster process and every pod process (children of our shims)."""
    total = 0
    for pid in offline._running().values():
        total += psutil.Process(pid).memory_info().rss
    for proc in psutil.process_iter(["cmdline"]):
        if "containerd-shim" in " ".join(proc.info["cmdline"] or []) and str(offline.CONTAINERD_STATE) in " ".join(
                proc.info["cmdline"] or []):
            total += proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    return total / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="rebuild every component from empty caches")
    args = parser.parse_args()
    rows = []
    if args.cold:
        rows.append(("cold build, all components", f"{cold_build():.0f} s", "<= 2100 s"))
    else:
        recorded = recorded_build_seconds()
        rows.append(("cold build, the cluster's components (as recorded)", f"{sum(recorded.values()):.0f} s "
                     f"({', '.join(f'{k} {v:.0f}' for k, v in sorted(recorded.items()))})", "<= 2100 s"))
    if manage.current_provider():
        manage.down()
    started = time.monotonic()
    manage.up("offline")
    rows.append(("warm `cluster up` to every system pod Ready", f"{time.monotonic() - started:.0f} s", "<= 60 s"))
    time.sleep(SETTLE_S)
    rows.append((f"idle memory, whole cluster ({SETTLE_S} s after up)", f"{cluster_memory_mib():.0f} MiB", "<= 1536 MiB"))
    started = time.monotonic()
    manage.down()
    rows.append(("`cluster down`", f"{time.monotonic() - started:.0f} s", "-"))
    print_table(("benchmark", "result", "target"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
