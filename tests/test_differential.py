"""Differential testing: the monolith and the microservices, sent the same generated
sequences of public requests, give the same status and body to every one of them.

The sequences come from a seeded generator (same seed, same requests: a failure can be
replayed), bounded in count and time. Both shops start fresh with the same seed data and
see the same requests in the same order, so their state stays the same too; only what
legitimately differs is normalised (generated ids, timestamps, X-headers).
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field

import pytest

from conftest import report, start_microservices, start_monolith
from msalab.shop import DECLINED_CARD, GOOD_CARD, ShopClient

SEED = 20240601
SEQUENCES, MAX_STEPS, TIME_BUDGET_S = 60, 8, 60
PRODUCTS = 50  # conftest.TEST_ENV
GENERATED_ID = re.compile(r"\b(o|pay|void)-[0-9a-f]{12}\b")


@dataclass
class Step:
    kind: str
    method: str
    path: str
    body: object = None
    raw: bytes | None = None
    headers: dict = field(default_factory=dict)
    order_ref: int | None = None  # GET /api/orders/{the ref-th order this shop placed}

    def describe(self) -> str:
        sent = self.raw if self.raw is not None else json.dumps(self.body) if self.body is not None else ""
        return f"[{self.kind}] {self.method} {self.path} {sent[:160]} {self.headers or ''}"


# -- the generator ------------------------------------------------------------------------------
def product(rng: random.Random) -> str:
    return f"p-{rng.randint(1, PRODUCTS):04d}" if rng.random() < 0.85 else rng.choice(["p-9999", "p-0000", "x"])


def order_body(rng: random.Random) -> dict:
    lines = [{"product_id": product(rng), "quantity": rng.choice([1, 1, 2, 3, 5, 60, 100, 101])}
             for _ in range(rng.choice([1, 1, 2, 3]))]
    if rng.random() < 0.1:  # two lines of one product: they add up
        lines.append(dict(lines[0]))
    card = GOOD_CARD if rng.random() < 0.8 else rng.choice([DECLINED_CARD, "12ab", "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "4" * 20])
    return {"items": lines, "card": card}


def place_order(rng: random.Random, keys: list) -> Step:
    body, roll = order_body(rng), rng.random()
    if roll < 0.15 and keys:
        key, earlier = rng.choice(keys)
        same = rng.random() < 0.6
        return Step("replay" if same else "key reused for another order", "POST", "/api/orders",
                    earlier if same else body, headers={"Idempotency-Key": key})
    if roll < 0.25:
        key, kind = rng.choice([("", "empty Idempotency-Key"), ("k" * 129, "Idempotency-Key too long"),
                                ("two words", "Idempotency-Key with a space"),
                                ("clé".encode(), "non-ASCII Idempotency-Key")])
        return Step(kind, "POST", "/api/orders", body, headers={"Idempotency-Key": key})
    if roll < 0.35:
        return Step("order without key", "POST", "/api/orders", body)
    key = f"key-{rng.getrandbits(48):012x}"
    keys.append((key, body))
    return Step("order", "POST", "/api/orders", body, headers={"Idempotency-Key": key})


def malformed(rng: random.Random) -> Step:
    raw, content_type, kind = rng.choice([
        ('{"items": [', "application/json", "malformed JSON"),
        ("items=1", "application/x-www-form-urlencoded", "form body"),
        ('{"items": [{"product_id": "p-0001", "quantity": 1}], "card": "%s", "coupon": 1}' % GOOD_CARD,
         "application/json", "unknown field"),
        ('{"items": [{"product_id": "p-0001", "quantity": "2"}], "card": "%s"}' % GOOD_CARD,
         "application/json", "quantity as a string"),
        ("[1, 2]", "application/json", "not an object"),
    ])
    return Step(kind, "POST", "/api/orders", raw=raw.encode(), headers={"Content-Type": content_type})


def read(rng: random.Random) -> Step:
    kind = rng.choice(["products", "product", "stock", "orders", "order"])
    if kind == "products":
        limit, offset = rng.choice([1, 5, 20, 500, 0, 501, -3]), rng.choice([0, 0, 10, 49, 50, -1])
        return Step("list products", "GET", f"/api/products?limit={limit}&offset={offset}")
    if kind == "product":
        if rng.random() < 0.1:
            return Step("control character in a product path", "GET", "/api/products/%01")
        return Step("get product", "GET", f"/api/products/{product(rng)}")
    if kind == "stock":
        return Step("stock", "GET", f"/api/inventory/{product(rng)}")
    if kind == "orders":
        return Step("list orders", "GET", f"/api/orders?limit={rng.choice([1, 5, 20, 500, 0, 501])}")
    if rng.random() < 0.2:
        return Step("unknown order", "GET", "/api/orders/o-000000000000")
    return Step("get order", "GET", "/api/orders/{ref}", order_ref=rng.randrange(1000))


def sequence(rng: random.Random) -> list[Step]:
    keys: list = []
    steps = []
    for _ in range(rng.randint(1, MAX_STEPS)):
        roll = rng.random()
        steps.append(place_order(rng, keys) if roll < 0.45 else malformed(rng) if roll < 0.55 else read(rng))
    return steps


# -- sending, and what to compare ----------------------------------------------------------------
class Side:
    """One shop, with the ids it generated, named in the order they first appeared."""

    def __init__(self, client) -> None:
        self.client = client
        self.order_ids: list[str] = []
        self.names: dict[str, str] = {}

    def send(self, step: Step):
        path = step.path
        if step.order_ref is not None:
            ref = self.order_ids[step.order_ref % len(self.order_ids)] if self.order_ids else "o-ffffffffffff"
            path = path.replace("{ref}", ref)
        kwargs = {"headers": step.headers}
        if step.raw is not None:
            kwargs["content"] = step.raw
        elif step.body is not None:
            kwargs["json"] = step.body
        reply = self.client.request(step.method, path, **kwargs)
        if reply.status == 201:
            self.order_ids.append(reply.body["order_id"])
        return reply

    def reconnect(self) -> None:
        self.client = ShopClient(self.client.url)

    def _name(self, match: re.Match) -> str:
        return self.names.setdefault(match.group(0), f"<{match.group(1)}{len(self.names) + 1}>")

    def normalise(self, value):
        if isinstance(value, dict):
            return {k: self.normalise(v) for k, v in value.items() if k != "created_at"}
        if isinstance(value, list):
            return [self.normalise(v) for v in value]
        if isinstance(value, str):
            return GENERATED_ID.sub(self._name, value)
        return value

    def answer(self, reply) -> tuple:
        headers = {k: reply.headers.get(k) for k in ("content-type", "idempotent-replayed")}
        return reply.status, headers, self.normalise(reply.body)


@pytest.fixture(scope="module")
def shops():
    mono, micro = start_monolith("diff-monolith"), start_microservices("diff-microservices")
    yield Side(mono.client), Side(micro.client)
    mono.cleanup()
    micro.cleanup()


def test_same_requests_same_answers(shops):
    mono, micro = shops
    rng = random.Random(SEED)
    started = time.monotonic()
    sent, counts = 0, {}
    for number in range(SEQUENCES):
        if time.monotonic() - started > TIME_BUDGET_S:
            break
        for index, step in enumerate(sequence(rng)):
            a, b = mono.answer(mono.send(step)), micro.answer(micro.send(step))
            sent += 1
            counts[step.kind] = counts.get(step.kind, 0) + 1
            if a == b:
                continue
            where = f"sequence {number} step {index} {step.describe()}"
            pytest.fail(f"the shops disagree at {where} (seed {SEED}):\n  monolith:      {a}\n  microservices: {b}")
    report(f"\ndifferential: {number + 1} sequences, {sent} requests each to both shops in"
          f" {time.monotonic() - started:.0f} s; by kind: {dict(sorted(counts.items()))}")
    assert sent >= 100 and counts.get("order", 0) >= 20, "the generator sent too little to compare"
    assert mono.order_ids and len(mono.order_ids) == len(micro.order_ids)
