"""Payments: charges and refunds, one charge per order at most."""

from __future__ import annotations

import uuid

from .db import Database
from .errors import ShopError
from .faults import FaultBoard

# A well-known test card number that payment providers always decline.
DECLINED_CARD = "4000000000000002"


class Payments:
    name = "payments"

    def __init__(self, db: Database, faults: FaultBoard) -> None:
        self.db = db
        self.faults = faults
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS payments (order_id TEXT PRIMARY KEY, payment_id TEXT NOT NULL,"
                " amount_cents INTEGER NOT NULL, status TEXT NOT NULL)"
            )

    def charge(self, order_id: str, amount_cents: int, card: str) -> dict:
        """Charging the same order again returns the first charge instead of charging twice."""
        self.faults.apply(self.name)
        if amount_cents <= 0:
            raise ShopError(422, "amount_cents must be positive")
        if not (card.isdigit() and 12 <= len(card) <= 19):
            raise ShopError(422, "card must be 12 to 19 digits")
        if card == DECLINED_CARD:
            raise ShopError(402, "payment declined by the card issuer", order_id=order_id)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM payments WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO payments VALUES (?, ?, ?, 'captured')",
                    (order_id, f"pay-{uuid.uuid4().hex[:12]}", amount_cents),
                )
                row = conn.execute("SELECT * FROM payments WHERE order_id = ?", (order_id,)).fetchone()
        return dict(row)

    def refund(self, order_id: str) -> dict:
        self.faults.apply(self.name)
        with self.db.transaction() as conn:
            conn.execute("UPDATE payments SET status = 'refunded' WHERE order_id = ?", (order_id,))
            row = conn.execute("SELECT * FROM payments WHERE order_id = ?", (order_id,)).fetchone()
        return dict(row) if row else {"order_id": order_id, "status": "none"}

    def get(self, order_id: str) -> dict:
        self.faults.apply(self.name)
        rows = self.db.query("SELECT * FROM payments WHERE order_id = ?", (order_id,))
        if not rows:
            raise ShopError(404, f"no payment for order {order_id!r}")
        return dict(rows[0])
