"""Hardening of the gateway and of the calls between services, against real shop processes:
paths that climb or smuggle slashes, internal endpoints, odd characters, big bodies, a hung
service, the OpenAPI document, service credentials."""

from __future__ import annotations

import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt
import pytest
import yaml

from conftest import TEST_ENV
from msalab import paths, ports, shop
from msalab.procs import ServiceProcess
from shop.clients import RemoteCatalog
from shop.errors import ShopError
from shop.faults import FaultBoard
from shop.routing import Upstreams

ORDER = {"items": [{"product_id": "p-0001", "quantity": 1}], "card": shop.GOOD_CARD}


def raw_request(url: str, target: str, method: str = "GET", headers: dict | None = None,
                body: bytes = b"") -> tuple[int, dict]:
    """One request sent byte for byte: HTTP clients refuse (or fix) the requests tested here."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall("\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(content)
    except ValueError:
        return status, {"text": content[:200].decode(errors="replace")}


def both(monolith, microservices):
    return {"monolith": monolith.client, "gateway": microservices.client}


# -- 1. paths that climb out of /api or smuggle a slash --------------------------------------
@pytest.mark.parametrize("method, target", [
    ("POST", "/api/inventory/%2e%2e/%2e%2e/admin/crash/inventory"),
    ("GET", "/api/inventory/%2e%2e/%2e%2e/admin/crash/inventory"),
    ("PUT", "/api/inventory/%2E%2e/%2e%2E/admin/faults/inventory"),
    ("POST", "/api/inventory/..%2f..%2fadmin%2fcrash%2finventory"),
    ("POST", "/api/inventory/..%2F..%2Fadmin%2Fcrash%2Finventory"),
    ("GET", "/api/products/..%5c..%5cadmin%5cfaults"),
    ("POST", "/api/inventory/../../admin/crash/inventory"),
    ("GET", "/api/products/./p-0001"),
])
def test_dot_segments_and_encoded_slashes_are_refused(microservices, method, target):
    status, body = raw_request(microservices.client.url, target, method,
                               {"Content-Type": "application/json"}, b'{"hang": true}')
    assert status == 400, body
    assert "refused" in body["error"] and ("dot segments" in body["error"] or "slash" in body["error"])
    time.sleep(0.2)  # a crash would end the process 50 ms after answering
    inventory = microservices.service_client("inventory")
    assert microservices["inventory"].alive() and inventory.ready()
    assert inventory.request("GET", "/admin/faults").body["inventory"]["hang"] is False


def test_the_monolith_refuses_the_same_paths(monolith):
    status, body = raw_request(monolith.client.url, "/api/inventory/%2e%2e/%2e%2e/admin/crash/inventory", "POST")
    assert status == 400 and "dot segments" in body["error"]
    assert monolith["monolith"].alive()


# -- 2. only the public API is public ----------------------------------------------------------
INTERNAL_CALLS = [
    ("POST", "/api/payments", {"order_id": "o-attacker", "amount_cents": 1, "card": shop.GOOD_CARD}),
    ("POST", "/api/payments/o-attacker/refund", None),
    ("GET", "/api/payments/o-attacker", None),
    ("POST", "/api/inventory/reservations", {"order_id": "o-attacker", "items": [{"product_id": "p-0009", "quantity": 5}]}),
    ("DELETE", "/api/inventory/reservations/o-attacker", None),
]


@pytest.mark.parametrize("method, path, body", INTERNAL_CALLS, ids=[f"{m} {p}" for m, p, _ in INTERNAL_CALLS])
def test_internal_saga_endpoints_are_not_public(monolith, microservices, method, path, body):
    for shape, client in both(monolith, microservices).items():
        before = client.stock("p-0009").body["available"]
        reply = client.request(method, path, json=body)
        assert reply.status in (404, 405), (shape, reply)
        listed = "GET /api/products" if reply.status == 404 else "allowed: GET"  # what exists there
        assert listed in reply.body["error"], (shape, reply)
        assert client.stock("p-0009").body["available"] == before, shape


@pytest.mark.parametrize("method, path, status", [
    ("POST", "/api/payments", 404), ("GET", "/api/nothing", 404),
    ("DELETE", "/api/products/p-0001", 405), ("PUT", "/api/orders", 405), ("POST", "/api/inventory/p-0001", 405),
])
def test_unknown_routes_answer_alike_on_both_shapes(monolith, microservices, method, path, status):
    answers = {shape: client.request(method, path) for shape, client in both(monolith, microservices).items()}
    assert {shape: (a.status, a.body) for shape, a in answers.items()} == {
        "monolith": (status, answers["gateway"].body), "gateway": (status, answers["gateway"].body)}
    if status == 405:
        assert answers["gateway"].headers["allow"] == answers["monolith"].headers["allow"]


# -- 2b. service credentials -----------------------------------------------------------------
def token(key: str, **claims) -> dict:
    now = int(time.time())
    full = {"iss": "orders", "sub": "orders", "aud": "inventory", "iat": now, "exp": now + 60, **claims}
    return {"Authorization": "Bearer " + jwt.encode(full, key, algorithm="HS256")}


@pytest.mark.parametrize("headers, status, message", [
    (lambda key, callee: {}, 401, "send a service credential"),
    (lambda key, callee: {"Authorization": "Basic b3JkZXJzOm9yZGVycw=="}, 401, "send a service credential"),
    (lambda key, callee: token("x" * 40, aud=callee), 401, "invalid service credential"),
    (lambda key, callee: token(key, aud="catalog"), 401, "meant for another service"),
    (lambda key, callee: token(key, aud=callee, iat=int(time.time()) - 200, exp=int(time.time()) - 100), 401, "expired"),
    (lambda key, callee: token(key, aud=callee, exp=int(time.time()) + 3600), 401, "lifetime at most 60 s"),
    (lambda key, callee: token(key, aud=callee, iss="gateway", sub="gateway"), 403, "only orders may"),
])
def test_internal_endpoints_check_the_callers_credential(microservices, headers, status, message):
    key = microservices.env.get("SHOP_SERVICE_KEY") or "k" * 40  # the original code had no key
    inventory, payments = microservices.service_client("inventory"), microservices.service_client("payments")
    before = inventory.stock("p-0011").body["available"]
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    reserved = inventory.request("POST", "/api/inventory/reservations", headers=headers(key, "inventory"),
                                 json={"order_id": order_id, "items": [{"product_id": "p-0011", "quantity": 3}]})
    charged = payments.request("POST", "/api/payments", headers=headers(key, "payments"),
                               json={"order_id": order_id, "amount_cents": 100, "card": shop.GOOD_CARD})
    for reply in (reserved, charged):
        assert reply.status == status and message in reply.body["error"], reply
    assert inventory.stock("p-0011").body["available"] == before
    # The orders service's own credential does get through.
    reserved = inventory.request("POST", "/api/inventory/reservations", headers=token(key),
                                 json={"order_id": order_id, "items": [{"product_id": "p-0011", "quantity": 1}]})
    released = inventory.request("DELETE", f"/api/inventory/reservations/{order_id}", headers=token(key))
    assert reserved.status == 201 and released.body["status"] == "released", (reserved, released)


def test_without_a_key_internal_endpoints_refuse_every_call(tmp_path):
    port = ports.free_port()
    inventory = ServiceProcess("inventory", "inventory", port, tmp_path, env={**TEST_ENV, "SHOP_SERVICE_KEY": ""},
                               deployment="test-no-key").start().wait_ready()
    try:
        client = shop.ShopClient(inventory.url)
        reply = client.request("POST", "/api/inventory/reservations", headers=token("y" * 40),
                               json={"order_id": "o-1", "items": [{"product_id": "p-0001", "quantity": 1}]})
        assert reply.status == 401 and "set SHOP_SERVICE_KEY" in reply.body["error"], reply
        assert client.stock("p-0001").status == 200  # the public route still answers
    finally:
        inventory.stop()


def test_each_local_deployment_gets_its_own_random_key():
    first, second = shop.Microservices("key-a"), shop.Microservices("key-b")
    keys = first.env.get("SHOP_SERVICE_KEY", ""), second.env.get("SHOP_SERVICE_KEY", "")
    assert keys[0] != keys[1] and min(map(len, keys)) >= 32


def test_kubernetes_manifests_read_the_key_from_a_secret():
    needs_key = {"orders", "inventory", "payments"}
    for manifest in sorted((paths.REPO / "cluster" / "shop").glob("*.yaml")):
        deployment = next(d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] == "Deployment")
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        if deployment["metadata"]["name"] in needs_key:
            assert env["SHOP_SERVICE_KEY"] == {"name": "SHOP_SERVICE_KEY", "valueFrom": {
                "secretKeyRef": {"name": "shop-service-key", "key": "key"}}}, manifest.name
        else:
            assert "SHOP_SERVICE_KEY" not in env, manifest.name
    assert "secrets.token_urlsafe" in (paths.REPO / "msalab" / "k8s.py").read_text()  # made by deploy_shop


# -- 3. odd characters and long paths: clear 4xx, same meaning on both shapes ------------------
@pytest.mark.parametrize("target, status, message", [
    ("/api/products/%01", 400, "control characters"),
    ("/api/products/" + "a" * 70_000, 414, "at most 2048"),
    ("/api/products/" + "a" * 3000, 414, "at most 2048"),
])
def test_odd_paths_get_a_clear_4xx(monolith, microservices, target, status, message):
    for client in both(monolith, microservices).values():
        answer_status, body = raw_request(client.url, target)
        assert answer_status == status and message in body["error"], (client.url, answer_status, body)


def test_non_ascii_idempotency_key_is_400_at_the_gateway(microservices):
    status, body = raw_request(microservices.client.url, "/api/orders", "POST",
                               {"Content-Type": "application/json", "Idempotency-Key": "ключ-☃"},
                               json.dumps(ORDER).encode())
    assert status == 400 and "idempotency-key" in body["error"].lower(), body


def test_non_ascii_request_id_is_replaced_at_the_gateway(microservices):
    """A request id only ties log lines together: an unusable one gets a fresh id, not a refusal."""
    status, body = raw_request(microservices.client.url, "/api/orders", "POST",
                               {"Content-Type": "application/json", "X-Request-ID": "ключ-☃"}, json.dumps(ORDER).encode())
    assert status == 201 and body["status"] == "confirmed", body


@pytest.mark.parametrize("path", ["/api/inventory/p-0001%3Fx", "/api/products/p-0001%23frag",
                                  "/api/products/p-0001%3F", "/api/inventory/p-0001%25"])
def test_encoded_characters_keep_their_meaning_through_the_gateway(monolith, microservices, path):
    answers = [client.request("GET", path) for client in both(monolith, microservices).values()]
    assert [a.status for a in answers] == [404, 404], answers
    assert answers[0].body == answers[1].body and "unknown product" in answers[0].body["error"]


@pytest.mark.parametrize("product_id", ["p-0001?x", "p-0001#x", "x/../p-0001", "..", "p-0001/"])
def test_remote_catalog_asks_for_exactly_the_product_id_it_is_given(microservices, product_id):
    catalog = RemoteCatalog("catalog", Upstreams({"catalog": microservices["catalog"].url}), 5)
    with pytest.raises(ShopError) as refused:
        catalog.get_product(product_id)
    assert refused.value.status == 404 and refused.value.details.get("product_id") == product_id
    assert catalog.get_product("p-0001")["id"] == "p-0001"


# -- 4. body size --------------------------------------------------------------------------------
def test_big_bodies_are_refused_everywhere(monolith, microservices):
    big = b'{"items": [' + b" " * 70_000 + b"]}"
    urls = [monolith.client.url, microservices.client.url, microservices["orders"].url, microservices["inventory"].url]
    for url in urls:
        declared = httpx.post(f"{url}/api/orders", content=big, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and "at most 65536" in declared.json()["error"], url
        # Chunked: no Content-Length, so the bytes are counted as they arrive.
        chunked = httpx.post(f"{url}/api/orders", content=iter([big[:40_000], big[40_000:]]),
                             headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413 and "larger than 65536" in chunked.json()["error"], url
    assert httpx.post(f"{microservices.client.url}/api/orders", json=ORDER).status_code == 201


# -- 5. a hung service does not wedge the gateway; hangs end by themselves ----------------------
@pytest.fixture(scope="module")
def capped():
    port_of = {s: ports.free_port() for s in shop.Microservices.SERVICES}
    env = {**TEST_ENV, "SHOP_GATEWAY_TIMEOUTS": "inventory=1.5", "SHOP_GATEWAY_MAX_IN_FLIGHT": "8"}
    deployment = shop.Microservices("test-capped", port_of=port_of, env=env).start()
    yield deployment
    deployment.cleanup()


def test_a_hung_service_leaves_the_other_routes_answering(capped):
    client, inventory = capped.client, capped.service_client("inventory")
    flood_client = shop.ShopClient(client.url, timeout_s=20)
    inventory.faults("inventory", hang=True)
    try:
        with ThreadPoolExecutor(60) as pool:
            flood = [pool.submit(flood_client.stock, "p-0001") for _ in range(60)]
            time.sleep(0.5)  # the flood is in flight
            pages = [client.product("p-0001") for _ in range(5)]
            answers = [f.result() for f in flood]
    finally:
        inventory.reset_faults()
    assert [p.status for p in pages] == [200] * 5 and max(p.ms for p in pages) < 1000, pages
    by_status = {s: sum(a.status == s for a in answers) for s in {a.status for a in answers}}
    assert set(by_status) <= {503, 504} and by_status.get(504, 0) <= 8, by_status
    assert any("calls in flight" in a.body.get("error", "") for a in answers)
    assert any("did not answer within 1.5 s" in a.body.get("error", "") for a in answers)
    assert client.stock("p-0001").status == 200


def test_hang_switches_itself_off_after_max_hang_s():
    board = FaultBoard(["catalog"], max_hang_s=0.3)
    board.update("catalog", {"hang": True})
    started = time.monotonic()
    board.apply("catalog")
    assert 0.25 <= time.monotonic() - started < 2 and board.get("catalog").hang is False


# -- 6. the OpenAPI documents: the public API, on both shapes -------------------------------
def operations(schema: dict) -> dict:
    return {(method.upper(), path): op for path, ops in schema["paths"].items() for method, op in ops.items()}


def test_openapi_documents_list_only_the_public_api(monolith, microservices):
    from shop.routing import PUBLIC_ROUTES

    mono = monolith.client.request("GET", "/openapi.json").body
    gateway = microservices.client.request("GET", "/openapi.json").body
    public = {(r.method, r.pattern) for r in PUBLIC_ROUTES}
    health = {("GET", "/health/live"), ("GET", "/health/ready")}
    assert set(operations(mono)) == public | health
    assert set(operations(gateway)) == public | health
    for key, op in operations(gateway).items():
        assert op.get("requestBody") == operations(mono)[key].get("requestBody"), key
        assert op.get("parameters") == operations(mono)[key].get("parameters"), key
        if key[1].startswith("/api"):
            assert {"400", "404", "405", "413", "414", "503", "504"} <= set(op["responses"]), key
    inventory = microservices.service_client("inventory").request("GET", "/openapi.json").body
    assert set(operations(inventory)) == {("GET", "/api/inventory/{product_id}")} | health


def test_odd_request_id_sent_straight_to_a_service_is_replaced_not_a_500(microservices):
    """A service called directly (as on Kubernetes, inside the cluster) gets the same header:
    it must not fail sending it on to its own peers."""
    status, body = raw_request(microservices["orders"].url, "/api/orders", "POST",
                               {"Content-Type": "application/json", "X-Request-ID": "ключ-☃"}, json.dumps(ORDER).encode())
    assert status == 201, body
