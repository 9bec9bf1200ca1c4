"""Hostile input: every bad request gets a clear 4xx with a JSON message, and changes nothing.

Each of these answered 500 (or was accepted, or the two shapes of the shop disagreed)."""

from __future__ import annotations

import uuid

import pytest

from conftest import as_orders
from msalab import shop
from msalab.shop import GOOD_CARD, ShopClient

ARABIC_INDIC_CARD = "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢"  # str.isdigit() is True for these


def snapshot(deployment) -> tuple:
    """What a request that is refused must not change (read through the public entry)."""
    client = deployment.client
    return (client.stock("p-0001").body["available"], client.stock("p-0002").body["available"],
            client.orders(limit=500).body["total"])


def post_order(client, items, card=GOOD_CARD, **headers) -> shop.Reply:
    return client.request("POST", "/api/orders", json={"items": items, "card": card}, headers=headers)


def orders_entry(deployment) -> ShopClient:
    """The orders service itself (the monolith is its own): no gateway in between."""
    return deployment.client if isinstance(deployment, shop.Monolith) else deployment.service_client("orders")


def assert_refused(reply, status: int, words: str) -> None:
    assert reply.status == status, reply
    assert words in reply.body["error"], reply.body


# -- numbers too big for the database ------------------------------------------------------
def test_an_amount_past_64_bits_is_422_not_500(microservices):
    """Payments is internal (only orders may call it; the monolith has no such route): called as
    orders calls it, a charge too large for SQLite's integers is refused, not a 500."""
    payments = as_orders(microservices, "payments")
    reply = payments.request("POST", "/api/payments", json={"order_id": "o-huge", "amount_cents": 2**63,
                                                            "card": GOOD_CARD})
    assert_refused(reply, 422, "amount_cents")
    assert payments.request("GET", "/api/payments/o-huge").status == 404


@pytest.mark.parametrize("lines", [[60, 60], [100] * 50, [2**62, 2**62], [2**63]], ids=["60+60", "50x100", "2x2^62", "2^63"])
def test_too_many_units_of_one_product_are_422_in_both_shapes(deployment, lines):
    """Lines of one product are added up; the sum is bounded like one line (at most 100),
    so the monolith and inventory agree and no total can overflow."""
    client = deployment.client
    before = snapshot(deployment)
    reply = post_order(client, [{"product_id": "p-0001", "quantity": q} for q in lines])
    assert reply.status == 422, reply
    assert "100" in reply.body["error"]
    assert snapshot(deployment) == before


def test_two_lines_of_60_get_the_same_answer_from_both_shapes(monolith, microservices):
    items = [{"product_id": "p-0002", "quantity": 60}, {"product_id": "p-0002", "quantity": 60}]
    mono, micro = post_order(monolith.client, items), post_order(microservices.client, items)
    assert (mono.status, mono.body) == (micro.status, micro.body)
    assert_refused(mono, 422, "at most 100 units of one product per order; p-0002 adds up to 120")


# -- ids that would break the URL of a call between services ---------------------------------
@pytest.mark.parametrize("product_id", ["\x01", "p-0001/", "p-0001%2F", "p-0001?x=1", "../inventory/p-0001", "", "é"])
def test_product_ids_that_are_not_ids_are_422(deployment, product_id):
    for entry in {deployment.client.url: deployment.client, orders_entry(deployment).url: orders_entry(deployment)}.values():
        before = snapshot(deployment)
        reply = post_order(entry, [{"product_id": product_id, "quantity": 1}])
        assert_refused(reply, 422, "product_id")
        assert snapshot(deployment) == before


def test_a_control_character_in_a_product_path_is_a_400_everywhere(deployment):
    """Through the front door, and at the catalog service itself: the same clear refusal."""
    entries = ([deployment.client] if isinstance(deployment, shop.Monolith)
               else [deployment.client, deployment.service_client("catalog")])
    for entry in entries:
        reply = entry.request("GET", "/api/products/%01")
        assert_refused(reply, 400, "control characters are not allowed")


# -- Idempotency-Key --------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["", "a" * 129, "two words", "tab\there"], ids=["empty", "129 chars", "space", "tab"])
def test_a_malformed_idempotency_key_is_400(deployment, key):
    client = deployment.client
    before = snapshot(deployment)
    reply = post_order(client, [{"product_id": "p-0001", "quantity": 1}], **{"Idempotency-Key": key})
    assert_refused(reply, 400, "Idempotency-Key must be 1 to 128 visible ASCII characters")
    assert snapshot(deployment) == before


def test_two_orders_with_an_empty_key_do_not_collide(deployment):
    client = deployment.client
    first = post_order(client, [{"product_id": "p-0001", "quantity": 1}], **{"Idempotency-Key": ""})
    second = post_order(client, [{"product_id": "p-0001", "quantity": 2}], **{"Idempotency-Key": ""})
    assert (first.status, second.status) == (400, 400), (first, second)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_a_non_ascii_idempotency_key_reaching_orders_is_400(deployment, encoding):
    """Sent to the orders service itself (the gateway in front of it is tested elsewhere)."""
    orders = orders_entry(deployment)
    before = snapshot(deployment)
    reply = post_order(orders, [{"product_id": "p-0001", "quantity": 1}], **{"Idempotency-Key": "clé".encode(encoding)})
    assert_refused(reply, 400, "visible ASCII")
    assert snapshot(deployment) == before


def test_the_longest_valid_key_is_accepted_and_replayed(deployment):
    key = ("~" + uuid.uuid4().hex) * 4  # 132: cut to 128 visible ASCII characters
    key = key[:128]
    first = post_order(deployment.client, [{"product_id": "p-0003", "quantity": 1}], **{"Idempotency-Key": key})
    again = post_order(deployment.client, [{"product_id": "p-0003", "quantity": 1}], **{"Idempotency-Key": key})
    assert (first.status, again.status) == (201, 200), (first, again)
    assert again.body["order_id"] == first.body["order_id"]


# -- cards ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("card", [ARABIC_INDIC_CARD, "４２４２４２４２４２４２４２４２", "42424242424242424242", "4242 4242 4242"],
                         ids=["arabic-indic digits", "fullwidth digits", "20 digits", "spaces"])
def test_a_card_of_other_than_12_to_19_ascii_digits_is_422(deployment, card):
    client = deployment.client
    before = snapshot(deployment)
    reply = post_order(client, [{"product_id": "p-0001", "quantity": 1}], card=card)
    assert_refused(reply, 422, "card")
    assert snapshot(deployment) == before


def test_payments_itself_refuses_non_ascii_digits(microservices):
    payments = as_orders(microservices, "payments")
    reply = payments.request("POST", "/api/payments", json={"order_id": "o-digits", "amount_cents": 100,
                                                            "card": ARABIC_INDIC_CARD})
    assert_refused(reply, 422, "card")
    assert payments.request("GET", "/api/payments/o-digits").status == 404
