"""Part II's components as containers: each is started, does its real job, and is stopped.

Needs a Docker engine. Images are the pinned upstream ones where they can be pulled, else
built here from package registries (make images builds them all once; a missing one is
built by the first start, which takes minutes).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from msalab import components, engine, images, paths, ports
from msalab.errors import LabError

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", autouse=True)
def engine_running():
    if not images.docker_available():
        message = "no Docker engine is running (fix: make setup on Linux, or start Docker Desktop)"
        if os.environ.get("MSALAB_REQUIRE_DOCKER"):  # CI: a skip here would hide a broken setup
            pytest.fail(message)
        pytest.skip(message)


def not_in_use(name: str) -> None:
    """Ports are fixed: a component a lab is running cannot be tested beside it, and is left alone."""
    if name in [c.name for c in components.running()]:
        message = f"{name} is already running (a lab's?): python -m msalab components stop, then test again"
        if os.environ.get("MSALAB_REQUIRE_DOCKER"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def started(name: str, **kwargs):
    """The component for the test's body; afterwards stopped, with nothing of it left."""
    not_in_use(name)
    component = components.start(name, **kwargs)
    try:
        yield component
    finally:
        components.stop(name)
    assert name not in [c.name for c in components.running()]
    assert components.container_name(name) not in [c[0] for c in components._containers(all_states=True)]
    assert all(ports.is_free(p) for p in component.ports.values())


@pytest.fixture
def local_server():
    """An HTTP server on the host (127.0.0.1, a free port): what the labs' services are."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (b"# TYPE msalab_test_up gauge\nmsalab_test_up 42\n" if self.path == "/metrics"
                    else f"hello from {self.path}".encode())
            self.send_response(200)
            # Prometheus 3 refuses a scrape without a metrics Content-Type (prometheus_client sends it).
            self.send_header("Content-Type", "text/plain; version=0.0.4" if self.path == "/metrics" else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", ports.free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def client() -> httpx.Client:
    return httpx.Client(timeout=10, trust_env=False)


def eventually(probe, timeout: float = 20):
    """probe() until it returns something truthy; its last answer otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_versions_pin_every_component():
    pinned = paths.versions()["components"]
    assert set(pinned) == {"etcd", "envoy", "loki", "jaeger", "prometheus", "fortio"}
    for spec in pinned.values():
        assert ":" in spec["upstream"] and not spec["upstream"].endswith(":latest")
    # Envoy's offline image is the cluster's: built once, used by both.
    assert components.offline_ref("envoy") == paths.versions()["cluster"]["envoy"]["image"]
    cluster_etcd_ports = {2379, 2380}
    assert not cluster_etcd_ports & set(pinned["etcd"]["ports"].values())


def test_etcd_put_range_and_a_lease_expiring():
    with started("etcd") as etcd, client() as http:
        base = etcd.urls["client"]
        http.post(f"{base}/v3/kv/put", json={"key": b64("config/color"), "value": b64("blue")}).raise_for_status()
        kvs = http.post(f"{base}/v3/kv/range", json={"key": b64("config/color")}).json()["kvs"]
        assert base64.b64decode(kvs[0]["value"]) == b"blue"
        lease = http.post(f"{base}/v3/lease/grant", json={"TTL": 2}).json()
        assert int(lease["TTL"]) == 2
        http.post(f"{base}/v3/kv/put", json={"key": b64("services/catalog/1"), "value": b64("127.0.0.1:8101"),
                                             "lease": lease["ID"]}).raise_for_status()
        assert http.post(f"{base}/v3/kv/range", json={"key": b64("services/catalog/1")}).json().get("kvs")
        # No keepalive: the registration disappears on its own once the lease runs out.
        gone = eventually(lambda: "kvs" not in http.post(f"{base}/v3/kv/range",
                                                         json={"key": b64("services/catalog/1")}).json(), 15)
        assert gone
        assert etcd.memory_mb() > 1 and etcd.cpu_seconds() > 0


ENVOY_CONFIG = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: gateway
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gateway
          route_config:
            virtual_hosts:
            - name: shop
              domains: ["*"]
              routes:
              - match: {{prefix: /api/}}
                route: {{cluster: backend}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}
"""


def test_envoy_routes_a_request_to_a_local_http_server(local_server):
    listener = 10000
    config = ENVOY_CONFIG.format(admin=components.spec("envoy")["ports"]["admin"], listener=listener,
                                 backend=local_server)
    with started("envoy", config_files={"envoy.yaml": config}) as envoy, client() as http:
        reply = http.get(f"http://127.0.0.1:{listener}/api/products")
        assert reply.status_code == 200 and reply.text == "hello from /api/products"
        assert reply.headers["server"] == "envoy"  # Envoy, not the server behind it, answered
        assert http.get(f"http://127.0.0.1:{listener}/other").status_code == 404  # no route
        stats = http.get(f"{envoy.urls['admin']}/stats?filter=cluster.backend.upstream_rq_total").text
        assert "upstream_rq_total: 1" in stats


def test_loki_push_then_query_range_returns_the_line():
    line = f"order placed {secrets.token_hex(4)}"
    with started("loki") as loki, client() as http:
        now = time.time_ns()
        push = {"streams": [{"stream": {"service": "orders"}, "values": [[str(now), line]]}]}
        assert http.post(f"{loki.url}/loki/api/v1/push", json=push).status_code == 204

        def lines():
            reply = http.get(f"{loki.url}/loki/api/v1/query_range",
                             params={"query": '{service="orders"}', "start": now - 60 * 10**9, "end": now + 60 * 10**9})
            return [v[1] for stream in reply.json()["data"]["result"] for v in stream["values"]]
        assert eventually(lines) == [line]


def test_jaeger_receives_an_otlp_span_and_returns_it():
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    now = time.time_ns()
    span = {"traceId": trace_id, "spanId": span_id, "name": "POST /api/orders", "kind": 2,
            "startTimeUnixNano": str(now - 5_000_000), "endTimeUnixNano": str(now)}
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "orders"}}]},
                               "scopeSpans": [{"scope": {"name": "test"}, "spans": [span]}]}]}
    with started("jaeger") as jaeger, client() as http:
        reply = http.post(f"{jaeger.urls['otlp_http']}/v1/traces", json=body)
        assert reply.status_code == 200, reply.text

        def trace():
            answer = http.get(f"{jaeger.urls['query']}/api/traces/{trace_id}")
            return answer.json()["data"] if answer.status_code == 200 else None
        data = eventually(trace)
        assert data and data[0]["spans"][0]["operationName"] == "POST /api/orders"
        assert data[0]["spans"][0]["spanID"] == span_id
        assert "orders" in http.get(f"{jaeger.urls['query']}/api/services").json()["data"]


def test_prometheus_scrapes_a_local_target(local_server):
    config = ("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: shop\n"
              f"    static_configs:\n      - targets: ['127.0.0.1:{local_server}']\n")
    with started("prometheus", config_files={"prometheus.yml": config}) as prom, client() as http:
        def value():
            result = http.get(f"{prom.url}/api/v1/query", params={"query": 'msalab_test_up{job="shop"}'}).json()
            return result["data"]["result"]
        result = eventually(value, 30)
        assert result and result[0]["value"][1] == "42"
        assert result[0]["metric"]["instance"] == f"127.0.0.1:{local_server}"


def test_fortio_load_against_fortio_server():
    with started("fortio") as fortio:
        out = components.run_once("fortio", ["load", "-qps", "50", "-c", "2", "-t", "2s", "-json", "-",
                                             f"{fortio.url}/echo"])
        report = json.loads(out)
        assert report["RetCodes"] == {"200": report["DurationHistogram"]["Count"]}
        assert report["DurationHistogram"]["Count"] >= 50
        percentiles = {p["Percentile"]: p["Value"] for p in report["DurationHistogram"]["Percentiles"]}
        assert 50 in percentiles and 99 in percentiles and 0 < percentiles[50] <= percentiles[99]
        assert fortio.cpu_seconds() > 0


def test_start_replaces_a_previous_one_and_says_which_port_is_taken():
    with started("etcd"):
        again = components.start("etcd")  # idempotent: the old container is replaced
        assert [c.name for c in components.running()].count("etcd") == 1 and again.running()
    client_port = components.spec("etcd")["ports"]["client"]
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last etcd's closed connections linger
        blocker.bind(("127.0.0.1", client_port))
        blocker.listen()
        with pytest.raises(LabError, match=f"port {client_port} "):
            components.start("etcd")
    assert "etcd" not in [c.name for c in components.running()]


def test_require_on_a_stopped_component_names_the_start_command():
    with started("fortio"):
        assert components.require("fortio").name == "fortio"
    with pytest.raises(LabError) as error:
        components.require("fortio")
    assert error.value.problem == "fortio is not running"
    assert "components.start('fortio')" in error.value.fix


def test_docker_down_says_how_to_start_it(monkeypatch):
    monkeypatch.setattr(engine, "docker_available", lambda: False)
    with pytest.raises(LabError) as error:
        components.start("etcd")
    assert "Docker" in error.value.problem and error.value.fix == engine.DOCKER_FIX


def test_missing_image_names_the_command_that_builds_it(monkeypatch):
    """No image pullable, none built, and no Go to build one: say what to run."""
    monkeypatch.setattr(images, "image_present", lambda ref: False)
    monkeypatch.setattr(images, "_pull", lambda ref: False)
    monkeypatch.setattr(images.shutil, "which", lambda tool: None)
    with pytest.raises(LabError) as error:
        components.image_for("loki")
    assert f"{components.spec('loki')['upstream']} cannot be pulled" in error.value.problem
    assert "python -m msalab images build" in error.value.fix
