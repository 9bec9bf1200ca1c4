"""Chaos: services killed with SIGKILL and restarted under load; nothing lost or duplicated."""

from __future__ import annotations

import collections
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

import ledger
from conftest import TEST_ENV, report, wait_until
from msalab import ports, procs, shop
from msalab.shop import ShopClient



def is_zombie_or_gone(pid: int) -> str:
    try:
        return "zombie" if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else "running"
    except psutil.NoSuchProcess:
        return "gone"


def test_a_service_that_crashes_is_reaped(tmp_path):
    """A service that ends on its own (here: the crash knob) must not stay a zombie of the
    process that started it (the notebook kernel): the chaos test below kills and restarts
    services many times."""
    service = procs.ServiceProcess("crashy", "catalog", ports.free_port(), tmp_path,
                                   env={"SHOP_PRODUCT_COUNT": "5"}, deployment="reap-test").start().wait_ready()
    pid = service.pid
    try:
        assert service.alive()
        assert httpx.post(f"{service.url}/admin/crash/catalog", timeout=5).status_code == 202
        assert wait_until(lambda: not service.alive(), 10), "the crash knob did not end the service"
        assert is_zombie_or_gone(pid) == "gone", "the crashed service was left a zombie"
        service.reap()
        assert service.pid is None and not service.record_path.exists()
        service.start().wait_ready()  # and it can be started again on the same port
        assert service.alive()
        restarted_pid = service.pid
        service.kill_and_restart()
        assert is_zombie_or_gone(restarted_pid) == "gone", "a killed service was left a zombie"
        assert service.alive() and service.pid != restarted_pid
    finally:
        service.stop()
    assert is_zombie_or_gone(service.pid or pid) == "gone"


# -- the chaos run --------------------------------------------------------------------------
LOAD_S = 25                    # orders are placed (and services killed) for this long
CLIENTS = 3
VICTIMS = ("orders", "payments", "inventory", "catalog")  # not the gateway: it is the way in
# Short timeouts make the safe recovery age short too: 2 calls x 2 s + 1 s = 5 s.
CHAOS_ENV = {**TEST_ENV, "SHOP_UPSTREAM_TIMEOUT_S": "2", "SHOP_RECOVERY_AGE_S": "5",
             "SHOP_RECOVERY_INTERVAL_S": "0.5"}
STARTING_STOCK = int(TEST_ENV["SHOP_PRODUCT_COUNT"]) * int(TEST_ENV["SHOP_INITIAL_STOCK"])


@dataclass
class Outcome:
    key: str
    items: dict
    answers: list = field(default_factory=list)  # (status, order_id or error)

    @property
    def order_ids(self) -> set:
        return {oid for status, oid in self.answers if status in (200, 201)}

    @property
    def final(self) -> int:
        return self.answers[-1][0] if self.answers else 0


def place_until_answered(client: ShopClient, outcome: Outcome, give_up_at: float) -> None:
    """Retry with the same Idempotency-Key on 5xx, no answer, or 'still being placed'."""
    while time.monotonic() < give_up_at:
        reply = client.order(outcome.items, key=outcome.key)
        outcome.answers.append((reply.status, reply.body.get("order_id") if reply.ok else reply.error
                                or reply.body.get("error")))
        retry = reply.status == 0 or reply.status >= 500 or (
            reply.status == 409 and "Idempotency-Key" in reply.body.get("error", ""))
        if not retry:
            return
        time.sleep(0.2)


def customers(url: str, outcomes: list, stop_at: float, seed: int) -> None:
    rng, client = random.Random(seed), ShopClient(url, timeout_s=5)
    while time.monotonic() < stop_at:
        items = {f"p-{rng.randint(1, 40):04d}": rng.randint(1, 3) for _ in range(rng.randint(1, 2))}
        outcome = Outcome(uuid.uuid4().hex, items)
        outcomes.append(outcome)
        place_until_answered(client, outcome, stop_at + 20)  # after the chaos, time to finish


def killer(deployment, stop_at: float, kills: list, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop_at - 2:
        time.sleep(rng.uniform(1.0, 2.5))
        name = rng.choice(VICTIMS)
        deployment[name].kill()
        time.sleep(rng.uniform(0.1, 0.8))  # down for a moment, as after a crash before a restart
        deployment[name].kill_and_restart()
        kills.append(name)


@pytest.fixture
def chaotic():
    port_of = {s: ports.free_port() for s in shop.Microservices.SERVICES}
    deployment = shop.Microservices("chaos", port_of=port_of, env=CHAOS_ENV).start()
    yield deployment
    deployment.cleanup()


def test_killed_services_lose_and_duplicate_no_order(chaotic):
    outcomes, kills = [], []
    stop_at = time.monotonic() + LOAD_S
    threads = [threading.Thread(target=customers, args=(chaotic.client.url, outcomes, stop_at, i))
               for i in range(CLIENTS)]
    threads.append(threading.Thread(target=killer, args=(chaotic, stop_at, kills, 99)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOAD_S + 60)
    assert not any(t.is_alive() for t in threads), "the load did not stop"
    assert all(chaotic[name].alive() for name in chaotic.SERVICES)

    # Orders whose caller gave up are undone by recovery after its age (5 s here).
    assert wait_until(lambda: ledger.read(chaotic).unfinished() == [], 30), ledger.read(chaotic).unfinished()
    books = ledger.read(chaotic)
    confirmed = books.confirmed()
    by_key = {o["idempotency_key"]: oid for oid, o in books.orders.items()}
    answered = [o for o in outcomes if o.order_ids]
    lost = [o.key for o in answered if not o.order_ids <= set(confirmed)]
    duplicated = [o.key for o in answered if len(o.order_ids) > 1 or by_key.get(o.key) not in o.order_ids]
    statuses = collections.Counter(o.final for o in outcomes)
    report(f"\nchaos: {len(outcomes)} orders attempted, {len(answered)} confirmed to their client,"
          f" {len(confirmed)} confirmed in the shop, final answers {dict(statuses)};"
          f" {sum(len(o.answers) for o in outcomes)} requests, {sum(len(o.answers) - 1 for o in outcomes)} retries;"
          f" {len(kills)} kills {dict(collections.Counter(kills))}")
    assert len(kills) >= 5 and len(answered) >= 20, "too little chaos or load to mean anything"
    assert lost == [], f"orders answered 200/201 but not confirmed: {lost}"
    assert duplicated == [], f"keys with more than one order: {duplicated}"
    assert ledger.imbalances(books, STARTING_STOCK) == []
    for outcome in answered[:: max(1, len(answered) // 10)]:  # and the API says the same
        assert chaotic.client.get_order(outcome.order_ids.pop()).body["status"] == "confirmed"
