"""Orders: places an order across catalog, inventory and payments, as a small saga.

Steps: price the items (catalog), reserve stock (inventory), charge (payments), confirm.
If a step fails the earlier steps are undone, so a caller never sees a half-written order.
An order is written as 'pending' before the first remote step: if the process dies in the
middle, the pending row tells the recovery loop what to undo after a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import uuid
from typing import Protocol

from .db import Database
from .errors import ShopError
from .faults import FaultBoard

log = logging.getLogger("shop.orders")


class CatalogPort(Protocol):
    def get_product(self, product_id: str) -> dict: ...


class InventoryPort(Protocol):
    def reserve(self, order_id: str, items: list[dict]) -> dict: ...
    def release(self, order_id: str) -> dict: ...


class PaymentsPort(Protocol):
    def charge(self, order_id: str, amount_cents: int, card: str) -> dict: ...
    def refund(self, order_id: str) -> dict: ...


def _merge_lines(items: list[dict]) -> list[dict]:
    quantities: dict[str, int] = {}
    for item in items:
        quantities[item["product_id"]] = quantities.get(item["product_id"], 0) + item["quantity"]
    return [{"product_id": p, "quantity": q} for p, q in quantities.items()]


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
                " request_hash TEXT NOT NULL, status TEXT NOT NULL, items TEXT NOT NULL,"
                " total_cents INTEGER NOT NULL, payment_id TEXT, created_at REAL NOT NULL)"
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
        items = _merge_lines(items)
        request_hash = _request_hash(items, card)
        if idempotency_key:
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
            self._undo(order_id)
            raise
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE orders SET status = 'confirmed', payment_id = ? WHERE id = ?",
                (payment["payment_id"], order_id),
            )
        log.info("order confirmed", extra={"order_id": order_id, "total_cents": total})
        return self.get(order_id), True

    def _replay(self, key: str, request_hash: str) -> dict | None:
        rows = self.db.query("SELECT * FROM orders WHERE idempotency_key = ?", (key,))
        if not rows:
            return None
        row = rows[0]
        if row["request_hash"] != request_hash:
            raise ShopError(422, "this Idempotency-Key was already used for a different order; use a new key")
        if row["status"] == "pending":
            raise ShopError(409, "an order with this Idempotency-Key is still being placed; retry in a few seconds")
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

    def _undo(self, order_id: str) -> bool:
        """Release stock, refund, forget the order. If a step fails the row stays pending
        and the recovery loop tries again later."""
        try:
            self.inventory.release(order_id)
            self.payments.refund(order_id)
        except ShopError as err:
            log.warning("undo incomplete, will retry", extra={"order_id": order_id, "error": err.message})
            return False
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM orders WHERE id = ? AND status = 'pending'", (order_id,))
        log.info("order undone", extra={"order_id": order_id})
        return True

    def recover_pending(self, older_than_s: float) -> int:
        """Undo orders a crashed or failed request left pending. Returns how many were undone."""
        cutoff = time.time() - older_than_s
        rows = self.db.query("SELECT id FROM orders WHERE status = 'pending' AND created_at <= ?", (cutoff,))
        return sum(self._undo(row["id"]) for row in rows)
