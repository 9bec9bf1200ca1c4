"""Resilience (Part II): the Guard's parts one by one, then a hung dependency contained."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from conftest import TEST_ENV
from msalab import ports, shop

sys.path.insert(0, str(shop.paths.LAB_SERVICES))
from shop.errors import ShopError  # noqa: E402
from shop.resilience import Guard  # noqa: E402


def failing(status: int, **details):
    def operation():
        raise ShopError(status, "peer failed", **details)
    return operation


def test_breaker_opens_after_failures_in_a_row_and_fails_fast():
    guard = Guard("payments", max_concurrent=5, retries=0, breaker_failures=3, breaker_reset_s=30)
    for _ in range(3):
        with pytest.raises(ShopError, match="peer failed"):
            guard.call(failing(503))
    with pytest.raises(ShopError, match="circuit open") as err:
        guard.call(lambda: "never called")
    assert err.value.details["protection"] == "circuit-breaker"
    assert guard.state()["circuit"] == "open"


def test_client_errors_do_not_open_the_breaker():
    guard = Guard("catalog", max_concurrent=5, retries=0, breaker_failures=2, breaker_reset_s=30)
    for _ in range(5):
        with pytest.raises(ShopError):
            guard.call(failing(422))
    assert guard.call(lambda: "ok") == "ok"


def test_retries_quick_5xx_but_not_timeouts():
    guard = Guard("inventory", max_concurrent=5, retries=2, breaker_failures=10, breaker_reset_s=30)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ShopError(503, "injected")
        return "ok"

    assert guard.call(flaky) == "ok" and len(calls) == 3
    calls.clear()

    def slow():
        calls.append(1)
        raise ShopError(503, "did not answer in time", timeout=True)

    with pytest.raises(ShopError, match="in time"):
        guard.call(slow)
    assert len(calls) == 1


def test_bulkhead_refuses_calls_beyond_its_size_at_once():
    guard = Guard("payments", max_concurrent=2, retries=0, breaker_failures=10, breaker_reset_s=30)
    release = threading.Event()
    holders = [threading.Thread(target=guard.call, args=(release.wait,)) for _ in range(2)]
    for thread in holders:
        thread.start()
    time.sleep(0.2)
    started = time.perf_counter()
    with pytest.raises(ShopError, match="bulkhead full"):
        guard.call(lambda: "ok")
    assert time.perf_counter() - started < 0.5  # refused at once, not queued (a queued call would wait for release)
    release.set()
    for thread in holders:
        thread.join()
    assert guard.call(lambda: "ok") == "ok"


@pytest.fixture(scope="module")
def protected():
    port_of = {s: ports.free_port() for s in shop.Microservices.SERVICES}
    env = {**TEST_ENV, "SHOP_RESILIENCE": "true", "SHOP_BREAKER_RESET_S": "30"}
    deployment = shop.Microservices("test-protected", port_of=port_of, env=env).start()
    yield deployment
    deployment.cleanup()


def test_hung_payments_is_contained(protected):
    client = protected.client
    payments = protected.service_client("payments")
    payments.faults("payments", hang=True)
    try:
        first = [client.order({"p-0001": 1}) for _ in range(5)]  # each waits out the 1 s timeout
        assert [r.status for r in first] == [503] * 5
        started = time.perf_counter()
        fast = client.order({"p-0001": 1})
        assert fast.status == 503 and "circuit open" in fast.body["error"]
        assert time.perf_counter() - started < 0.5
        state = protected.service_client("orders").request("GET", "/admin/resilience").body
        assert {p["peer"]: p["circuit"] for p in state["peers"]}["payments"] == "open"
        assert client.product("p-0001").status == 200  # the healthy path is untouched
    finally:
        payments.reset_faults()


def test_failures_hidden_by_retries_do_not_open_the_breaker():
    """A flaky peer (every other attempt fails) must not trip the circuit: the breaker counts
    whole calls, after their retries."""
    guard = Guard("payments", max_concurrent=5, retries=2, breaker_failures=2, breaker_reset_s=30)
    attempts = []

    def every_other():
        attempts.append(1)
        if len(attempts) % 2:
            raise ShopError(503, "injected")
        return "ok"

    assert [guard.call(every_other) for _ in range(10)] == ["ok"] * 10
    assert guard.state()["circuit"] == "closed"
