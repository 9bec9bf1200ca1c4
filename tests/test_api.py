"""The shop's public API, run against the monolith and the microservices alike."""

from __future__ import annotations

import uuid

import pytest

from conftest import fault_client
from msalab.shop import DECLINED_CARD


def stock(client, product: str) -> int:
    return client.stock(product).body["available"]


def confirmed_orders(client) -> int:
    return client.orders(limit=500).body["total"]


def test_products_are_listed_and_looked_up(deployment):
    client = deployment.client
    listing = client.products(limit=3)
    assert listing.status == 200
    assert [p["id"] for p in listing.body["products"]] == ["p-0001", "p-0002", "p-0003"]
    assert listing.body["total"] == 50
    one = client.product("p-0002")
    assert one.status == 200 and one.body["price_cents"] > 0


def test_unknown_product_is_404_with_message(deployment):
    reply = deployment.client.product("p-9999")
    assert reply.status == 404
    assert "unknown product" in reply.body["error"]


def test_order_goes_through_and_takes_stock(deployment):
    client = deployment.client
    before = stock(client, "p-0003")
    reply = client.order({"p-0003": 2})
    assert reply.status == 201, reply
    order = reply.body
    assert order["status"] == "confirmed"
    assert order["total_cents"] == 2 * client.product("p-0003").body["price_cents"]
    assert stock(client, "p-0003") == before - 2
    assert client.get_order(order["order_id"]).body == order


def test_retry_with_same_key_returns_same_order(deployment):
    client = deployment.client
    key = uuid.uuid4().hex
    before_stock, before_orders = stock(client, "p-0004"), confirmed_orders(client)
    first = client.order({"p-0004": 1}, key=key)
    again = client.order({"p-0004": 1}, key=key)
    assert first.status == 201 and again.status == 200
    assert again.body["order_id"] == first.body["order_id"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert stock(client, "p-0004") == before_stock - 1
    assert confirmed_orders(client) == before_orders + 1


def test_same_key_for_a_different_order_is_refused(deployment):
    client = deployment.client
    key = uuid.uuid4().hex
    assert client.order({"p-0005": 1}, key=key).status == 201
    reply = client.order({"p-0005": 2}, key=key)
    assert reply.status == 422 and "Idempotency-Key" in reply.body["error"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ('{"items": [{"product_id": "p-0001", "quantity": 1}', 400, "malformed JSON"),
        ('{"items": [{"product_id": "p-0001", "quantity": -2}], "card": "4242424242424242"}', 422, "greater than or equal to 1"),
        ('{"items": [{"product_id": "p-0001", "quantity": 0}], "card": "4242424242424242"}', 422, "quantity"),
        ('{"items": [{"product_id": "p-0001", "quantity": "2"}], "card": "4242424242424242"}', 422, "quantity"),
        ('{"items": [], "card": "4242424242424242"}', 422, "items"),
        ('{"items": [{"product_id": "p-0001", "quantity": 1}]}', 422, "card"),
        ('{"items": [{"product_id": "p-0001", "quantity": 1}], "card": "4242424242424242", "coupon": 1}', 422, "coupon"),
        ('[1, 2]', 422, "invalid request"),
        ('{"items": [{"product_id": "p-0001", "quantity": 1}], "card": "12ab"}', 422, "card"),
    ],
)
def test_bad_order_bodies_get_4xx_and_write_nothing(deployment, body, status, message):
    client = deployment.client
    before_stock, before_orders = stock(client, "p-0001"), confirmed_orders(client)
    reply = client.request("POST", "/api/orders", content=body, headers={"Content-Type": "application/json"})
    assert reply.status == status, reply
    assert message in reply.body["error"]
    assert stock(client, "p-0001") == before_stock
    assert confirmed_orders(client) == before_orders


def test_body_that_is_not_json_gets_415(deployment):
    reply = deployment.client.request("POST", "/api/orders", content="a=1",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 415 and "application/json" in reply.body["error"]


def test_unknown_product_in_order_is_422_and_nothing_reserved(deployment):
    client = deployment.client
    before = stock(client, "p-0006")
    reply = client.order({"p-0006": 1, "p-9999": 1})
    assert reply.status == 422 and "p-9999" in reply.body["error"]
    assert stock(client, "p-0006") == before


def test_declined_payment_is_402_and_stock_is_given_back(deployment):
    client = deployment.client
    before_stock, before_orders = stock(client, "p-0007"), confirmed_orders(client)
    reply = client.order({"p-0007": 3}, card=DECLINED_CARD)
    assert reply.status == 402 and "declined" in reply.body["error"]
    assert stock(client, "p-0007") == before_stock
    assert confirmed_orders(client) == before_orders


def test_not_enough_stock_is_409_and_nothing_changes(deployment):
    client = deployment.client
    before = stock(client, "p-0008")
    reply = client.order({"p-0008": before + 1} if before < 100 else {"p-0008": 100})
    assert reply.status == 409 and "in stock" in reply.body["error"]
    assert stock(client, "p-0008") == before


def test_health_endpoints(deployment):
    client = deployment.client
    assert client.request("GET", "/health/live").status == 200
    assert client.request("GET", "/health/ready").status == 200


def test_metrics_count_requests(deployment):
    deployment.client.products()
    text = deployment.client.metrics()
    assert "http_requests_total" in text and 'route="/api/products"' in text


def test_injected_latency_and_errors(deployment):
    client, knobs = deployment.client, fault_client(deployment, "catalog")
    assert knobs.faults("catalog", latency_ms=300).status == 200
    slow = client.product("p-0001")
    assert slow.status == 200 and slow.ms >= 300
    knobs.faults("catalog", latency_ms=0, error_rate=1.0)
    failing = client.product("p-0001")
    assert failing.status == 503 and "injected fault in catalog" in failing.body["error"]
    knobs.reset_faults()
    assert client.product("p-0001").status == 200


def test_not_ready_knob_fails_readiness_only(deployment):
    knobs = fault_client(deployment, "payments")
    knobs.faults("payments", ready=False)
    assert knobs.request("GET", "/health/ready").status == 503
    assert knobs.request("GET", "/health/live").status == 200
    knobs.reset_faults()
    assert knobs.request("GET", "/health/ready").status == 200


@pytest.mark.parametrize("knobs, message", [({"error_rate": 2}, "between 0 and 1"), ({"speed": 1}, "unknown fault knobs"),
                                             ({"hang": "yes"}, "true or false"), ({"latency_ms": -1}, "between")])
def test_bad_fault_knobs_are_refused(deployment, knobs, message):
    reply = fault_client(deployment, "catalog").faults("catalog", **knobs)
    assert reply.status == 422 and message in reply.body["error"]


def test_fault_knob_for_a_module_not_served_is_404(microservices):
    reply = microservices.service_client("catalog").faults("payments", latency_ms=1)
    assert reply.status == 404 and "not served here" in reply.body["error"]
