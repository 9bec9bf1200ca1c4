"""Logs, traces and configuration: what later parts of the course build on."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from msalab import ports, procs

from shop.config import load_settings


def test_one_trace_id_follows_an_order_through_every_service(microservices):
    reply = microservices.client.order({"p-0010": 1})
    assert reply.status == 201
    trace_id = reply.headers["x-trace-id"]
    seen = {name for name, proc in microservices.procs.items()
            if any(e.get("trace_id") == trace_id for e in proc.log_entries())}
    assert {"gateway", "orders", "catalog", "inventory", "payments"} <= seen


def test_log_lines_are_json_with_ids(monolith):
    reply = monolith.client.product("p-0001")
    entries = [e for e in monolith["monolith"].log_entries() if e.get("request_id") == reply.headers["x-request-id"]]
    assert entries and entries[-1]["path"] == "/api/products/p-0001" and len(entries[-1]["trace_id"]) == 32


def test_incoming_trace_context_is_continued(monolith):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = monolith.client.request("GET", "/api/products/p-0001",
                                    headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert reply.headers["x-trace-id"] == trace_id


def test_settings_file_then_environment(tmp_path):
    config = tmp_path / "shop.yaml"
    config.write_text("port: 9100\nversion: green\nproduct_count: 7\n")
    settings = load_settings({"service": "catalog"}, {"SHOP_CONFIG_FILE": str(config), "SHOP_PORT": "9200"})
    assert (settings.port, settings.version, settings.product_count) == (9200, "green", 7)


@pytest.mark.parametrize("content, message", [("colour: red\n", "unknown settings"), ("- 1\n", "YAML mapping")])
def test_bad_settings_file_is_explained(tmp_path, content, message):
    config = tmp_path / "shop.yaml"
    config.write_text(content)
    with pytest.raises(SystemExit, match=message):
        load_settings({}, {"SHOP_CONFIG_FILE": str(config)})


def test_unknown_service_is_refused():
    run = subprocess.run([sys.executable, "-m", "shop", "basket"], capture_output=True, text=True)
    assert run.returncode != 0 and "invalid choice" in run.stderr


def test_console_exporter_writes_spans(tmp_path):
    service = procs.ServiceProcess("traced", "catalog", ports.free_port(), tmp_path,
                                   env={"SHOP_OTEL_EXPORTER": "console"}, deployment="test-tracing")
    try:
        service.start().wait_ready()
        trace_id = httpx.get(f"{service.url}/api/products/p-0001").headers["x-trace-id"]
        deadline = time.monotonic() + 5
        while trace_id not in service.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f'"trace_id": "0x{trace_id}"' in service.log_path.read_text()
    finally:
        service.stop()
