"""Orders: places an order across catalog, inventory and payments, as a small saga.

Steps: price the items (catalog), reserve stock (inventory), charge (payments), confirm.
If a step fails the earlier steps are undone, so a caller never sees a half-written order.
An order is written as 'pending' before the first remote step: if the process dies in the
middle, the pending row tells the recovery loop what to undo after a restart.

Confirming and undoing exclude each other: each changes the row only while it is still
'pending' (pending -> confirmed, or pending -> undoing), so exactly one of them wins. An
order that recovery claimed is never confirmed, and once it is undone, inventory and
payments refuse a reserve or a charge of it that arrives late (a slow call still on its way).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import time
import uuid
from typing import Protocol

from .db import Database
from .errors import ShopError
from .faults import FaultBoard
from .payments import MAX_AMOUNT_CENTS as MAX_ORDER_CENTS

log = logging.getLogger("shop.orders")


class CatalogPort(Protocol):
    def get_product(self, product_id: str) -> dict: ...


class InventoryPort(Protocol):
    def reserve(self, order_id: str, items: list[dict]) -> dict: ...
    def release(self, order_id: str) -> dict: ...


class PaymentsPort(Protocol):
    def charge(self, order_id: str, amount_cents: int, card: str) -> dict: ...
    def refund(self, order_id: str) -> dict: ...


MAX_LINES = 50        # lines in one order
MAX_QUANTITY = 100    # units of one product in one order, over all its lines
# A key a client makes up (a UUID, say): visible ASCII, so it reads the same in every log,
# header and database, and an empty one cannot stand for "no key".
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
IDEMPOTENCY_KEY_RULE = "Idempotency-Key must be 1 to 128 visible ASCII characters (no spaces), e.g. a UUID"


def check_idempotency_key(key: str | None) -> None:
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise ShopError(400, IDEMPOTENCY_KEY_RULE)


def quantity_over_limit(items: list[dict]) -> str | None:
    """Why the merged lines are too many units of one product, or None."""
    for line in _add_up(items):
        if line["quantity"] > MAX_QUANTITY:
            return (f"at most {MAX_QUANTITY} units of one product per order; {line['product_id']}"
                    f" adds up to {line['quantity']} over its lines")
    return None


def _add_up(items: list[dict]) -> list[dict]:
    quantities: dict[str, int] = {}
    for item in items:
        quantities[item["product_id"]] = quantities.get(item["product_id"], 0) + item["quantity"]
    return [{"product_id": p, "quantity": q} for p, q in quantities.items()]


def _merge_lines(items: list[dict]) -> list[dict]:
    """One line per product. The same bound holds per product as per line, so every service
    that sees the merged lines accepts what the order accepted."""
    problem = quantity_over_limit(items)
    if problem:
        raise ShopError(422, problem)
    return _add_up(items)


def _request_hash(items: list[dict], card: str) -> str:
    canonical = json.dumps({"items": sorted(items, key=lambda i: i["product_id"]), "card": card}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Orders:
    name = "orders"

    def __init__(
        self,
        db: Database,
        faults: FaultBoard,
        catalog: CatalogPort,
        inventory: InventoryPort,
        payments: PaymentsPort,
    ) -> None:
        self.db, self.faults = db, faults
        self.catalog, self.inventory, self.payments = catalog, inventory, payments
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE,"
                " request_hash TEXT NOT NULL,"
                " status TEXT NOT NULL CHECK (status IN ('pending', 'undoing', 'confirmed')),"
                " items TEXT NOT NULL,"
                f" total_cents INTEGER NOT NULL CHECK (total_cents BETWEEN 1 AND {MAX_ORDER_CENTS}),"
                " payment_id TEXT, created_at REAL NOT NULL)"
            )

    # -- reading -------------------------------------------------------------------------
    @staticmethod
    def _to_json(row: sqlite3.Row) -> dict:
        return {
            "order_id": row["id"],
            "status": row["status"],
            "items": json.loads(row["items"]),
            "total_cents": row["total_cents"],
            "payment_id": row["payment_id"],
            "created_at": row["created_at"],
        }

    def get(self, order_id: str) -> dict:
        self.faults.apply(self.name)
        rows = self.db.query("SELECT * FROM orders WHERE id = ?", (order_id,))
        if not rows:
            raise ShopError(404, f"unknown order {order_id!r}")
        return self._to_json(rows[0])

    def list(self, limit: int = 20) -> dict:
        self.faults.apply(self.name)
        if not 1 <= limit <= 500:
            raise ShopError(422, "limit must be 1..500")
        rows = self.db.query(
            "SELECT * FROM orders WHERE status = 'confirmed' ORDER BY created_at DESC LIMIT ?", (limit,)
        )
        count = self.db.query("SELECT COUNT(*) AS n FROM orders WHERE status = 'confirmed'")[0]["n"]
        return {"orders": [self._to_json(r) for r in rows], "total": count}

    # -- placing -------------------------------------------------------------------------
    def place(self, items: list[dict], card: str, idempotency_key: str | None = None) -> tuple[dict, bool]:
        """Returns (order, created). created is False when an earlier identical request won."""
        self.faults.apply(self.name)
        check_idempotency_key(idempotency_key)
        items = _merge_lines(items)
        request_hash = _request_hash(items, card)
        if idempotency_key is not None:
            earlier = self._replay(idempotency_key, request_hash)
            if earlier:
                return earlier, False
        lines = self._price(items)
        total = sum(line["quantity"] * line["unit_price_cents"] for line in lines)
        order_id = f"o-{uuid.uuid4().hex[:12]}"
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO orders VALUES (?, ?, ?, 'pending', ?, ?, NULL, ?)",
                    (order_id, idempotency_key, request_hash, json.dumps(lines), total, time.time()),
                )
        except sqlite3.IntegrityError:
            # Another request with the same key got in first: answer as a retry would.
            earlier = self._replay(idempotency_key, request_hash)
            if earlier:
                return earlier, False
            raise
        try:
            self.inventory.reserve(order_id, items)
            payment = self.payments.charge(order_id, total, card)
        except ShopError:
            if not self._claim(order_id):  # recovery claimed it first (its error may be a late step refused)
                raise self._undone_by_recovery(order_id) from None
            self._compensate(order_id)  # if a step fails here, the recovery loop finishes it
            raise
        if not self._confirm(order_id, payment["payment_id"]):
            raise self._undone_by_recovery(order_id)
        log.info("order confirmed", extra={"order_id": order_id, "total_cents": total})
        return self.get(order_id), True

    def _confirm(self, order_id: str, payment_id: str) -> bool:
        """pending -> confirmed; False when recovery claimed the order first."""
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE orders SET status = 'confirmed', payment_id = ? WHERE id = ? AND status = 'pending'",
                (payment_id, order_id),
            ).rowcount
        return changed == 1

    def _undone_by_recovery(self, order_id: str) -> ShopError:
        """The answer for an order that recovery undid while it was being placed (a step took
        longer than the recovery age). Its stock and money are given back here too, so the
        answer can say so: the charge may have landed after recovery's refund."""
        settled = self._compensate(order_id)
        log.warning("order undone by recovery before it was confirmed", extra={"order_id": order_id})
        outcome = ("nothing was charged and no stock is held" if settled
                   else "its charge and stock are being given back")
        return ShopError(503, f"the order took too long and was undone before it could be confirmed;"
                              f" {outcome}; place it again (the same Idempotency-Key is fine)",
                         order_id=order_id, undone=True)

    def _replay(self, key: str, request_hash: str) -> dict | None:
        rows = self.db.query("SELECT * FROM orders WHERE idempotency_key = ?", (key,))
        if not rows:
            return None
        row = rows[0]
        if row["request_hash"] != request_hash:
            raise ShopError(422, "this Idempotency-Key was already used for a different order; use a new key")
        if row["status"] == "pending":
            raise ShopError(409, "an order with this Idempotency-Key is still being placed; retry in a few seconds")
        if row["status"] == "undoing":
            raise ShopError(409, "an order with this Idempotency-Key failed and is being undone; retry in a few seconds")
        return self._to_json(row)

    def _price(self, items: list[dict]) -> list[dict]:
        lines = []
        for item in items:
            try:
                product = self.catalog.get_product(item["product_id"])
            except ShopError as err:
                if err.status == 404:
                    raise ShopError(422, f"unknown product {item['product_id']!r}", product_id=item["product_id"]) from err
                raise
            lines.append({**item, "name": product["name"], "unit_price_cents": product["price_cents"]})
        return lines

    # -- undoing -------------------------------------------------------------------------
    def _claim(self, order_id: str) -> bool:
        """pending -> undoing; False when the order was confirmed (or claimed) first."""
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE orders SET status = 'undoing' WHERE id = ? AND status = 'pending'", (order_id,)
            ).rowcount
        return changed == 1

    def _compensate(self, order_id: str) -> bool:
        """Release, refund, forget an order that is no longer pending. Each step is idempotent,
        and afterwards inventory and payments refuse a late reserve or charge of this order."""
        try:
            self.inventory.release(order_id)
            self.payments.refund(order_id)
        except ShopError as err:
            log.warning("undo incomplete, will retry", extra={"order_id": order_id, "error": err.message})
            return False
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM orders WHERE id = ? AND status = 'undoing'", (order_id,))
        log.info("order undone", extra={"order_id": order_id})
        return True

    def recover_pending(self, older_than_s: float) -> int:
        """Undo orders that a crashed, failed or too slow request left pending (or half
        undone). Returns how many were undone. `older_than_s` must be at least the longest
        a request can take (Settings.longest_order_s): younger orders may still be on their way."""
        cutoff = time.time() - older_than_s
        rows = self.db.query(
            "SELECT id, status FROM orders WHERE status IN ('pending', 'undoing') AND created_at <= ?", (cutoff,)
        )
        undone = 0
        for row in rows:
            if row["status"] == "pending" and not self._claim(row["id"]):
                continue  # confirmed meanwhile
            undone += self._compensate(row["id"])
        return undone
