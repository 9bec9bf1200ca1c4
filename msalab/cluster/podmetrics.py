"""Why `kubectl top pods` (and so the HPA) has no numbers for a pod: the chain it depends on,
checked link by link, each with what to look at and the command that fixes it.

The chain: the container runtime's stats (CRI) and the kubelet's cAdvisor -> the kubelet's
summary API (/stats/summary) and resource metrics (/metrics/resource) -> metrics-server,
which scrapes them every 15 s and needs two scrapes before a new pod has a CPU rate -> the
metrics.k8s.io API that kubectl top and the HPA read.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LabError

FIX = "python -m msalab cluster down && python -m msalab cluster up   (then python -m msalab doctor)"


def listed_pods(cluster, namespace: str) -> set[str]:
    """The pods that metrics.k8s.io has numbers for."""
    from kubernetes.client.exceptions import ApiException

    try:
        items = cluster.custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", namespace, "pods")["items"]
    except ApiException:
        return set()
    return {item["metadata"]["name"] for item in items}


def _summary_pods(cluster, namespace: str) -> dict[str, dict]:
    """The kubelet's own view: pod -> {cpu: usageNanoCores, memory: workingSetBytes}."""
    summary = json.loads(cluster.core.connect_get_node_proxy_with_path(cluster.node_name(), "stats/summary"))
    pods = {}
    for pod in summary.get("pods", []):
        if pod["podRef"]["namespace"] == namespace:
            pods[pod["podRef"]["name"]] = {"cpu": pod.get("cpu", {}).get("usageNanoCores"),
                                           "memory": pod.get("memory", {}).get("workingSetBytes")}
    return pods


def _log_tail(cluster, lines: int = 15) -> str:
    return cluster.kubectl("logs", "-n", "kube-system", "deploy/metrics-server", f"--tail={lines}", check=False)


def _kubelet_stats_lines(log_path: Path, lines: int = 8) -> list[str]:
    """The kubelet's complaints about its stats sources (offline provider: its log is a file)."""
    if not log_path.exists():
        return []
    words = ("cadvisor", "container factory", "stats", "cri_stats")
    found = [line for line in log_path.read_text(errors="replace").splitlines()
             if any(word in line.lower() for word in words) and ("error" in line.lower() or line.startswith("E"))]
    return found[-lines:]


def explain(cluster, namespace: str, pod_prefix: str = "", kubelet_log: Path | None = None) -> str:
    """A report of each link of the chain for the pods of `namespace` (named pod_prefix*)."""
    wanted = {p.metadata.name for p in cluster.core.list_namespaced_pod(namespace).items
              if p.metadata.name.startswith(pod_prefix) and p.status.phase == "Running"}
    report = [f"running pods{' named ' + pod_prefix + '*' if pod_prefix else ''} in {namespace}: {sorted(wanted) or 'none'}"]
    try:
        summary = _summary_pods(cluster, namespace)
    except Exception as err:  # noqa: BLE001: the report says what failed, whatever it was
        report.append(f"kubelet summary API (/stats/summary) failed: {err.__class__.__name__}: {str(err)[:200]}")
        summary = {}
    missing_in_kubelet = sorted(p for p in wanted if not (summary.get(p) or {}).get("cpu"))
    report.append("kubelet summary API: " + (f"no CPU figures for {missing_in_kubelet} (the kubelet's stats "
                                              "source is the problem: see its log)" if missing_in_kubelet
                                              else "has CPU and memory for every one"))
    listed = listed_pods(cluster, namespace)
    report.append(f"metrics.k8s.io lists: {sorted(listed & wanted) or 'none of them'}")
    report.append("metrics-server log (last lines):\n  " + "\n  ".join(_log_tail(cluster).splitlines() or ["(empty)"]))
    if kubelet_log is not None:
        complaints = _kubelet_stats_lines(kubelet_log)
        report.append(f"kubelet log ({kubelet_log}), stats errors:\n  " + ("\n  ".join(complaints) or "(none)"))
    return "\n".join(report)


def wait_for(cluster, namespace: str, pod_prefix: str, timeout_s: float = 120,
             kubelet_log: Path | None = None) -> None:
    """Until metrics.k8s.io has numbers for a running pod named pod_prefix*; else a LabError
    that shows each link of the chain."""
    try:
        cluster.wait_until(lambda: any(name.startswith(pod_prefix) for name in listed_pods(cluster, namespace)),
                           f"pod metrics for {pod_prefix}* in {namespace}", timeout_s, every_s=5)
    except LabError as err:
        raise LabError(f"{err.message}\n{explain(cluster, namespace, pod_prefix, kubelet_log)}", FIX) from None
