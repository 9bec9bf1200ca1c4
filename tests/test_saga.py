"""The order saga: recovery and confirmation exclude each other, and a step that arrives
after its order was undone cannot take stock or money."""

from __future__ import annotations

import sys
import time
import uuid

import pytest

import ledger
from conftest import TEST_ENV, as_orders, start_microservices, wait_until
from msalab import ports, shop
from msalab.shop import ShopClient

sys.path.insert(0, str(shop.paths.LAB_SERVICES))
from shop.config import load_settings  # noqa: E402

PRODUCTS, STOCK = int(TEST_ENV["SHOP_PRODUCT_COUNT"]), int(TEST_ENV["SHOP_INITIAL_STOCK"])
# Recovery as eager as it may be: the shortest age, looked for five times a second.
EAGER_RECOVERY = {**TEST_ENV, "SHOP_RECOVERY_AGE_S": "1", "SHOP_RECOVERY_INTERVAL_S": "0.2"}
SLOW_PAYMENTS_MS = 2500  # longer than the recovery age, shorter than the services' 5 s timeout



@pytest.fixture(params=["monolith", "microservices"])
def eager(request):
    """A deployment of its own whose recovery loop runs as early as it is allowed to."""
    if request.param == "monolith":
        deployment = shop.Monolith("saga-monolith", port=ports.free_port(), env=EAGER_RECOVERY).start()
    else:
        port_of = {s: ports.free_port() for s in shop.Microservices.SERVICES}
        deployment = shop.Microservices("saga-microservices", port_of=port_of, env=EAGER_RECOVERY).start()
    yield deployment
    deployment.cleanup()


def payments_knobs(deployment) -> ShopClient:
    return deployment.client if isinstance(deployment, shop.Monolith) else deployment.service_client("payments")


def test_recovery_never_undoes_an_order_that_is_then_confirmed(eager):
    """Payments is slower than the recovery age: recovery must not undo the order while it
    is being placed, and if it does (the monolith has no timeouts to bound a request), the
    order must not be confirmed afterwards: no confirmed order without its money and stock."""
    payments_knobs(eager).faults("payments", latency_ms=SLOW_PAYMENTS_MS)
    reply = ShopClient(eager.client.url, timeout_s=20).order({"p-0001": 2}, key=uuid.uuid4().hex)
    time.sleep(SLOW_PAYMENTS_MS / 1000 + 1)  # a refund recovery started may still be landing
    payments_knobs(eager).reset_faults()
    assert reply.status in (201, 503), reply
    books = ledger.read(eager)
    assert ledger.imbalances(books, PRODUCTS * STOCK) == []
    assert wait_until(lambda: ledger.read(eager).unfinished() == [], 10), ledger.read(eager).orders
    if reply.status == 201:
        assert books.orders[reply.body["order_id"]]["status"] == "confirmed"
        assert eager.client.get_order(reply.body["order_id"]).body["status"] == "confirmed"
    else:  # undone while it was placed: said so, and nothing is charged or held
        assert "undone" in reply.body["error"] and "nothing was charged" in reply.body["error"]
        assert reply.body["order_id"] not in books.confirmed()
        assert books.payments.get(reply.body["order_id"], ("voided",))[0] in ("refunded", "voided")
    if isinstance(eager, shop.Microservices):  # its timeouts bound a request: recovery waits them out
        assert reply.status == 201, reply


@pytest.mark.parametrize("eager", ["microservices"], indirect=True)  # the monolith has no timeouts
def test_microservices_raise_a_recovery_age_shorter_than_an_order_can_take(eager):
    warnings = [e for e in eager["orders"].log_entries() if "recovery_age_s=1" in e.get("msg", "")]
    assert warnings and "using 11 s" in warnings[0]["msg"], [e.get("msg") for e in eager["orders"].log_entries()][:10]


def test_longest_order_comes_from_timeouts_and_tries():
    plain = load_settings({"service": "orders"}, environ={})
    assert plain.longest_order_s() == 2 * 5.0 + 1.0  # reserve + charge, one 5 s try each, + margin
    protected = load_settings({"service": "orders", "resilience": True, "retries": 2, "call_timeout_s": 1.0},
                              environ={})
    assert protected.longest_order_s() == 2 * (3 * 1.0 + 2 * 0.5) + 1.0  # 3 tries, 2 backoffs
    assert load_settings({"service": "orders", "recovery_age_s": 1}, environ={}).safe_recovery_age_s() == 11.0
    assert load_settings({"service": "orders", "recovery_age_s": 60}, environ={}).safe_recovery_age_s() == 60.0


@pytest.fixture(scope="module")
def services():
    deployment = start_microservices("saga-late-steps")
    yield deployment
    deployment.cleanup()


def test_a_charge_that_arrives_after_its_refund_is_refused(services):
    payments = as_orders(services, "payments")
    order_id = f"o-late-{uuid.uuid4().hex[:8]}"
    assert payments.request("POST", f"/api/payments/{order_id}/refund").status == 200  # the undo got there first
    late = payments.request("POST", "/api/payments", json={"order_id": order_id, "amount_cents": 500,
                                                            "card": "4242424242424242"})
    assert late.status == 409 and "undone" in late.body["error"], late
    assert payments.request("GET", f"/api/payments/{order_id}").body["status"] == "voided"


def test_a_charge_again_after_a_refund_does_not_count_as_paid(services):
    payments = as_orders(services, "payments")
    order_id = f"o-again-{uuid.uuid4().hex[:8]}"
    charge = {"order_id": order_id, "amount_cents": 500, "card": "4242424242424242"}
    assert payments.request("POST", "/api/payments", json=charge).status == 201
    assert payments.request("POST", f"/api/payments/{order_id}/refund").body["status"] == "refunded"
    again = payments.request("POST", "/api/payments", json=charge)
    assert again.status == 409, again  # not the refunded payment, which orders would take as paid


def test_a_reservation_that_arrives_after_its_release_is_refused(services):
    inventory = as_orders(services, "inventory")
    order_id = f"o-late-{uuid.uuid4().hex[:8]}"
    before = inventory.stock("p-0009").body["available"]
    assert inventory.request("DELETE", f"/api/inventory/reservations/{order_id}").status == 200
    late = inventory.request("POST", "/api/inventory/reservations",
                             json={"order_id": order_id, "items": [{"product_id": "p-0009", "quantity": 2}]})
    assert late.status == 409 and "undone" in late.body["error"], late
    assert inventory.stock("p-0009").body["available"] == before
