"""Orders are never lost or duplicated: restarts, crashes mid-order, retries, races."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import start_microservices, start_monolith, wait_until
from msalab.shop import ShopClient



@pytest.fixture(params=["monolith", "microservices"])
def fresh(request):
    """A deployment of its own: these tests kill processes."""
    start = start_monolith if request.param == "monolith" else start_microservices
    deployment = start(f"guarantees-{request.param}")
    yield deployment
    deployment.cleanup()


def orders_process(deployment):
    return deployment.procs.get("orders") or deployment.procs["monolith"]


def test_acknowledged_order_survives_a_hard_kill(fresh):
    reply = fresh.client.order({"p-0001": 2})
    assert reply.status == 201
    orders_process(fresh).kill()  # SIGKILL: no chance to flush anything
    assert fresh.client.get_order(reply.body["order_id"]).status in (0, 502, 503)
    fresh.restart() if not hasattr(fresh, "route") else fresh.restart("orders")
    again = fresh.client.get_order(reply.body["order_id"])
    assert again.status == 200 and again.body == reply.body


def test_crash_in_the_middle_of_an_order_leaves_nothing_half_written(fresh):
    """Payments hangs, orders is killed while waiting: after restart the reservation is undone."""
    client = fresh.client
    payments = client if "monolith" in fresh.procs else fresh.service_client("payments")
    before = client.stock("p-0002").body["available"]
    payments.faults("payments", hang=True)
    key = uuid.uuid4().hex
    impatient = ShopClient(client.url, timeout_s=1.0)
    assert impatient.order({"p-0002": 3}, key=key).status == 0  # no answer: it hangs in payments
    assert wait_until(lambda: client.stock("p-0002").body.get("available") == before - 3, 5)
    orders_process(fresh).kill()
    if "monolith" in fresh.procs:
        fresh.restart()
    else:
        payments.faults("payments", hang=False)
        fresh.restart("orders")
    # the recovery loop (SHOP_RECOVERY_AGE_S=1 in tests) gives the reserved units back
    assert wait_until(lambda: fresh.client.stock("p-0002").body.get("available") == before)
    # The units come back before the saga records the order as undone; until then a retry with
    # the same key is told 409 "being undone; retry in a few seconds", which a client follows.
    replies = []
    assert wait_until(lambda: replies.append(fresh.client.order({"p-0002": 3}, key=key)) or replies[-1].status != 409)
    retry = replies[-1]
    assert retry.status == 201, retry
    assert all(r.status == 409 and "being undone" in r.body.get("error", "") for r in replies[:-1]), replies
    assert fresh.client.stock("p-0002").body["available"] == before - 3
    assert fresh.client.orders(limit=500).body["total"] == 1


def test_retry_after_a_timeout_does_not_duplicate(fresh):
    client = fresh.client
    payments = client if "monolith" in fresh.procs else fresh.service_client("payments")
    payments.faults("payments", latency_ms=1500)
    key = uuid.uuid4().hex
    first = ShopClient(client.url, timeout_s=0.5).order({"p-0003": 1}, key=key)
    assert first.status == 0  # the client gave up; the shop did not
    payments.faults("payments", latency_ms=0)
    replies = []
    assert wait_until(lambda: replies.append(client.order({"p-0003": 1}, key=key)) or replies[-1].status == 200)
    assert client.orders(limit=500).body["total"] == 1
    assert client.stock("p-0003").body["available"] == 49


def test_concurrent_duplicates_make_one_order(fresh):
    client, key = fresh.client, uuid.uuid4().hex
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: client.order({"p-0004": 1}, key=key), range(8)))
    statuses = sorted(r.status for r in replies)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {200, 201, 409}
    assert len({r.body["order_id"] for r in replies if r.status in (200, 201)}) == 1
    assert client.orders(limit=500).body["total"] == 1
    assert client.stock("p-0004").body["available"] == 49


def test_crash_knob_ends_only_that_service(microservices):
    reply = microservices.service_client("payments").crash("payments")
    assert reply.status == 202
    assert wait_until(lambda: not microservices["payments"].alive(), 5)
    assert all(microservices[name].alive() for name in ("gateway", "catalog", "inventory", "orders"))
    assert microservices.client.product("p-0001").status == 200
    refused = microservices.client.order({"p-0001": 1})
    assert refused.status == 503 and "payments" in refused.body["error"]
    microservices.restart("payments")
    assert microservices.client.order({"p-0001": 1}).status == 201
