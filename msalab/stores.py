"""Clients for the Part II components the labs talk to, each checked to be running first
(a LabError names the component and the command that starts it)."""

from __future__ import annotations

import json
import sys
import time

import httpx

from . import components, paths
from .errors import LabError


def etcd():
    """The shop's own etcd client (lab-services/shop/etcd.py) for the course's etcd: the
    same code the services use, so the lab and the services see the store alike."""
    component = components.require("etcd")
    if str(paths.LAB_SERVICES) not in sys.path:
        sys.path.insert(0, str(paths.LAB_SERVICES))
    from shop.etcd import Etcd

    return Etcd(component.url)


def jaeger_trace(trace_id: str, timeout_s: float = 20, expect_services: int = 1) -> list[dict]:
    """One trace from the course's Jaeger, as spans sorted by start: service, operation,
    start_ms (from the trace's start), duration_ms, span_id, parent_id. Spans reach Jaeger
    in batches, so this waits (up to timeout_s) until spans of `expect_services` services are in."""
    jaeger = components.require("jaeger")
    deadline, spans = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        answer = httpx.get(f"{jaeger.urls['query']}/api/traces/{trace_id}", timeout=5)
        if answer.status_code == 200 and answer.json().get("data"):
            spans = _flatten(answer.json()["data"][0])
            if len({s["service"] for s in spans}) >= expect_services:
                return spans
        time.sleep(0.5)
    return spans


def _flatten(trace: dict) -> list[dict]:
    services = {pid: process["serviceName"] for pid, process in trace["processes"].items()}
    start = min(span["startTime"] for span in trace["spans"])
    spans = [{"service": services[span["processID"]], "operation": span["operationName"],
              "start_ms": (span["startTime"] - start) / 1000, "duration_ms": span["duration"] / 1000,
              "span_id": span["spanID"],
              "parent_id": next((r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"), None)}
             for span in trace["spans"]]
    return sorted(spans, key=lambda s: s["start_ms"])


def loki_query(logql: str, minutes: float = 15, limit: int = 2000) -> list[dict]:
    """Log lines matching a LogQL query over the last `minutes`, oldest first, each as its
    parsed JSON plus the stream's labels under "labels"."""
    loki = components.require("loki")
    now = time.time_ns()
    answer = httpx.get(f"{loki.url}/loki/api/v1/query_range", timeout=30, params={
        "query": logql, "start": now - int(minutes * 60e9), "end": now, "limit": limit, "direction": "forward"})
    answer.raise_for_status()
    lines = [{**json.loads(line), "labels": stream["stream"]}
             for stream in answer.json()["data"]["result"] for _, line in stream["values"]]
    return sorted(lines, key=lambda line: line.get("ts", 0))


def loki_metric(logql: str) -> dict[str, float]:
    """An instant LogQL metric query (count_over_time, rate...) as {label values: number}."""
    loki = components.require("loki")
    answer = httpx.get(f"{loki.url}/loki/api/v1/query", params={"query": logql}, timeout=30)
    answer.raise_for_status()
    return {",".join(r["metric"].values()) or "all": float(r["value"][1]) for r in answer.json()["data"]["result"]}


def _prometheus(path: str, **params) -> list[dict]:
    prometheus = components.require("prometheus")
    answer = httpx.get(f"{prometheus.url}/api/v1/{path}", params=params, timeout=30)
    if answer.status_code == 400:  # a PromQL mistake: say which
        raise LabError(f"Prometheus refused the query: {answer.json().get('error')}", "fix the PromQL and run again")
    answer.raise_for_status()
    return answer.json()["data"]


def prom_query(promql: str, by: str = "service") -> dict[str, float]:
    """An instant PromQL query: {value of label `by`: number}."""
    return {r["metric"].get(by, "all"): float(r["value"][1]) for r in _prometheus("query", query=promql)["result"]}


def prom_range(promql: str, start: float, end: float, step_s: float = 2, by: str = "service") -> dict[str, list[tuple[float, float]]]:
    """A PromQL query over time: {value of label `by`: [(unix time, number), ...]}."""
    data = _prometheus("query_range", query=promql, start=start, end=end, step=step_s)
    return {r["metric"].get(by, "all"): [(float(t), float(v)) for t, v in r["values"]] for r in data["result"]}


def prom_targets() -> dict[str, str]:
    """Each scrape target's service label and health (up, down, unknown)."""
    return {t["labels"].get("service", t["scrapeUrl"]): t["health"] for t in _prometheus("targets")["activeTargets"]}


def prom_alerts() -> list[dict]:
    """Alerts now pending or firing: name, state, labels, annotations."""
    return [{"name": a["labels"]["alertname"], "state": a["state"], "labels": a["labels"], "annotations": a["annotations"]}
            for a in _prometheus("alerts")["alerts"]]
