"""make soak-istiod (needs the course cluster and the mesh: make cluster; python -m msalab mesh
install): does `proxy-status` over istiod's XDS port ever hang while configuration changes?

Three loops ask istiod for every proxy's sync state over XDS, as a workshop student's
`istioctl proxy-status` does (here as istio-system, which reads every proxy), while a fourth
changes a VirtualService, so istiod keeps pushing to the same proxies. Istio 1.31's handler
took each proxy's read lock twice (cluster/offline/istio-debug-syncz-lock.patch): a push that
asked for the write lock in between hung that proxy and every later proxy-status for good,
which istioctl reports as "timeout, still waiting for updates: istio.io/debug/syncz".

A soak, not a test: the fault needs an unlucky interleaving (here, the unfixed istiod hung
after 525 s), so a pass only bounds how often it could happen. SOAK_SECONDS sets the length.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

from msalab import k8s
from msalab.cluster import manage, mesh as istio
from msalab.mesh import Mesh, gateway_and_catalog

NAMESPACE, STATUS_LOOPS = "soak-istiod", 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Soak:
    def __init__(self, port: int, namespace: str):
        self.port, self.namespace, self.stop, self.hang = port, namespace, threading.Event(), ""
        self.counts = {"proxy-status calls": 0, "config changes": 0, "connection errors": 0}

    def ask_status(self) -> None:
        command = [str(istio.istioctl()), f"--kubeconfig={manage.kubeconfig()}", "proxy-status", "-o", "json",
                   f"--xds-address=127.0.0.1:{self.port}", "--istioNamespace=istio-system", "--insecure"]
        while not self.stop.is_set():
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                result = subprocess.CompletedProcess(command, 1, "", f"no answer in 60 s ({istio.SYNCZ_HANG})")
            if istio.SYNCZ_HANG in result.stderr:
                self.hang = result.stderr.strip()
                self.stop.set()
            elif result.returncode:  # the port-forward under load, not the fault: ask again
                self.counts["connection errors"] += 1
                time.sleep(1)
            else:
                self.counts["proxy-status calls"] += 1

    def change_config(self) -> None:
        change = 0
        while not self.stop.is_set():
            change += 1
            route = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                     "metadata": {"name": "catalog", "namespace": self.namespace},
                     "spec": {"hosts": ["catalog"], "http": [{"timeout": f"{1 + change % 50}s",
                                                              "route": [{"destination": {"host": "catalog"}}]}]}}
            subprocess.run([*manage.kubectl_command(), "apply", "-f", "-"], input=json.dumps(route),
                           capture_output=True, text=True)
            self.counts["config changes"] += 1


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "900"))
    cluster = k8s.Cluster()
    namespace = gateway_and_catalog(cluster, NAMESPACE, Mesh(cluster))
    port = _free_port()
    forward = subprocess.Popen([*manage.kubectl_command(), "port-forward", "-n", "istio-system", "svc/istiod",
                                f"{port}:15012"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    soak, started = Soak(port, namespace), time.monotonic()
    try:
        time.sleep(3)
        loops = [threading.Thread(target=soak.ask_status) for _ in range(STATUS_LOOPS)]
        loops.append(threading.Thread(target=soak.change_config))
        for loop in loops:
            loop.start()
        while not soak.stop.is_set() and time.monotonic() - started < seconds:
            print(f"  {time.monotonic() - started:5.0f} s: {soak.counts}", flush=True)
            soak.stop.wait(min(60, seconds - (time.monotonic() - started)))
        soak.stop.set()
        for loop in loops:
            loop.join()
    finally:
        forward.kill()
        cluster.delete_namespace(namespace)
    elapsed = time.monotonic() - started
    image = cluster.kubectl("get", "deployment", "istiod", "-n", "istio-system",
                            "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    print(f"istiod {image}: {elapsed:.0f} s, {soak.counts}")
    if soak.hang:
        print(f"HUNG after {elapsed:.0f} s: {soak.hang}\nistiod's proxies get no configuration until it restarts: "
              "python -m msalab kubectl -- rollout restart deployment/istiod -n istio-system")
        return 1
    print("no hang")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
