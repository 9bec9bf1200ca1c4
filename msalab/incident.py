"""One incident watched in four layers at once (Lab III.6, step 5).

While a steady stream of requests runs, a fault makes one pod fail part of its requests for a
while. Every few seconds we read each layer the way its own tool does:

- the node: CPU from metrics-server (what `kubectl top node` shows);
- the pod: its CPU from cAdvisor, as the change of its CPU counter between two of cAdvisor's
  own measurements (about 10 s apart: two reads in between would show no change);
- the application: request and error rates from the gateway's `/metrics`;
- Kubernetes: the Deployment's ready pods, from the API.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import load, promtext


@dataclass
class LayerSample:
    t: float                 # seconds since the stream started
    node_cpu_m: float        # metrics-server
    pod_cpu_m: float         # cAdvisor
    requests_per_s: float    # the gateway's /metrics
    errors_per_s: float
    ready_pods: int          # the API


def gateway_counts(shop, route: str) -> tuple[float, float]:
    """(requests, non-200 answers) the gateway has counted on `route` so far."""
    text = shop.metrics()
    total = promtext.total(text, "http_requests_total", route=route)
    return total, total - promtext.total(text, "http_requests_total", route=route, status="200")


def watch(cluster, namespace: str, shop, pod: str, service: str = "catalog", call=None, route: str = "/api/products",
          seconds: float = 60, every_s: float = 3, fault_window: tuple[float, float] = (20, 35),
          error_rate: float = 0.5, rate_per_s: float = 20) -> list[LayerSample]:
    """Run the stream for `seconds`, make `pod` fail `error_rate` of its requests during
    `fault_window`, and sample the four layers every `every_s` seconds."""
    call = call or (lambda: shop.product("p-0001"))
    faults = cluster.pod_client(namespace, pod)
    node = cluster.node_name()

    def pod_cpu():  # cumulative CPU seconds, and when cAdvisor measured them
        return cluster.cadvisor_by_pod(namespace, "container_cpu_usage_seconds_total", pod)[pod]

    samples = []
    try:
        with load.Stream(call, rate_per_s=rate_per_s) as stream:
            last_t, last_counts, last_cpu, pod_cpu_m = stream.elapsed(), gateway_counts(shop, route), pod_cpu(), 0.0
            while stream.elapsed() < seconds:
                time.sleep(every_s)
                now = stream.elapsed()
                if fault_window[0] <= now < fault_window[1]:
                    faults.faults(service, error_rate=error_rate)
                elif now >= fault_window[1]:
                    faults.reset_faults()
                counts, cpu = gateway_counts(shop, route), pod_cpu()
                if cpu[1] != last_cpu[1]:  # a new cAdvisor measurement: the rate between the two
                    pod_cpu_m, last_cpu = (cpu[0] - last_cpu[0]) / (cpu[1] - last_cpu[1]) * 1000, cpu
                dt = now - last_t
                samples.append(LayerSample(now, cluster.resource_usage("nodes")[node][0], pod_cpu_m,
                                           (counts[0] - last_counts[0]) / dt, (counts[1] - last_counts[1]) / dt,
                                           cluster.ready_pods(namespace, service)))
                last_t, last_counts = now, counts
    finally:
        faults.reset_faults()  # never leave the fault on, whatever stopped the watch
    return samples
