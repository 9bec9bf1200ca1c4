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
import subprocess
import threading
import time

from msalab import k8s
from msalab.cluster import manage, mesh as istio
from msalab.mesh import Mesh, gateway_and_catalog
from msalab.ports import free_port

NAMESPACE, STATUS_LOOPS = "soak-istiod", 3


class Forward:
    """kubectl port-forward to istiod's XDS port, started again when it dies (a soak that talks to
    a dead forward would only count connection errors and test nothing)."""

    def __init__(self):
        self.port, self.process = free_port(), None
        self.ensure()

    def ensure(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([*manage.kubectl_command(), "port-forward", "-n", "istio-system",
                                             "svc/istiod", f"{self.port}:15012"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(3)

    def close(self) -> None:
        self.process.kill()


def istioctl_command() -> list[str]:
    """Found once: istio.istioctl() looks up the cluster's provider, which costs more than a call."""
    return [str(istio.istioctl()), f"--kubeconfig={manage.kubeconfig()}"]


def proxy_status(istioctl: list[str], port: int) -> subprocess.CompletedProcess:
    """istioctl proxy-status over XDS as istio-system (every proxy); a hang shows as SYNCZ_HANG."""
    command = [*istioctl, "proxy-status", "-o", "json", f"--xds-address=127.0.0.1:{port}",
               "--istioNamespace=istio-system", "--insecure"]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 1, "", f"no answer in 60 s ({istio.SYNCZ_HANG})")


class Soak:
    def __init__(self, forward: Forward, namespace: str):
        self.forward, self.namespace, self.stop, self.suspect = forward, namespace, threading.Event(), ""
        self.istioctl = istioctl_command()
        self.counts = {"proxy-status calls": 0, "config changes": 0, "connection errors": 0, "failed changes": 0}

    def ask_status(self) -> None:
        while not self.stop.is_set():
            result = proxy_status(self.istioctl, self.forward.port)
            if istio.SYNCZ_HANG in result.stderr:
                self.suspect = result.stderr.strip()  # main() confirms it through a fresh port-forward
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
            applied = subprocess.run([*manage.kubectl_command(), "apply", "-f", "-"], input=json.dumps(route),
                                     capture_output=True, text=True)
            self.counts["failed changes" if applied.returncode else "config changes"] += 1

    def confirmed_hang(self) -> bool:
        """A suspected hang, asked again through a port-forward of its own: a stalled forward
        looks the same from istioctl."""
        fresh = Forward()
        try:
            return istio.SYNCZ_HANG in proxy_status(self.istioctl, fresh.port).stderr
        finally:
            fresh.close()


def soak(namespace: str, seconds: float) -> tuple[Soak, str, float]:
    forward = Forward()
    run, started, hang, printed = Soak(forward, namespace), time.monotonic(), "", 0.0
    loops = [threading.Thread(target=run.ask_status) for _ in range(STATUS_LOOPS)]
    loops.append(threading.Thread(target=run.change_config))
    try:
        for loop in loops:
            loop.start()
        while not hang and time.monotonic() - started < seconds:
            run.stop.wait(5)
            forward.ensure()
            if run.suspect:
                hang = run.suspect if run.confirmed_hang() else ""
                run.counts["connection errors"] += not hang
                run.suspect = ""
            if time.monotonic() - printed >= 60:
                printed = time.monotonic()
                print(f"  {printed - started:5.0f} s: {run.counts}", flush=True)
    finally:
        run.stop.set()
        for loop in loops:
            loop.join()
        forward.close()
    return run, hang, time.monotonic() - started


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "900"))
    cluster = k8s.Cluster()
    namespace = gateway_and_catalog(cluster, NAMESPACE, Mesh(cluster))
    try:
        run, hang, elapsed = soak(namespace, seconds)
    finally:
        cluster.delete_namespace(namespace)
    image = cluster.kubectl("get", "deployment", "istiod", "-n", "istio-system",
                            "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    print(f"istiod {image}: {elapsed:.0f} s, {run.counts}")
    if hang:
        print(f"HUNG after {elapsed:.0f} s: {hang}\nistiod's proxies get no configuration until it restarts: "
              "python -m msalab kubectl -- rollout restart deployment/istiod -n istio-system")
        return 1
    if not run.counts["proxy-status calls"] or not run.counts["config changes"]:
        print("the soak tested nothing (no proxy-status answered, or no change was applied): "
              "python -m msalab mesh status")
        return 2
    print("no hang")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
