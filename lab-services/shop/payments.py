"""Payments: charges and refunds, one charge per order at most."""

from __future__ import annotations

import re
import uuid

from .db import Database
from .errors import ShopError
from .faults import FaultBoard

# A well-known test card number that payment providers always decline.
DECLINED_CARD = "4000000000000002"
# ASCII digits only: str.isdigit() also takes other scripts' digits ('٤٢٤٢...').
CARD = re.compile(r"[0-9]{12,19}")
CARD_PATTERN = "^[0-9]{12,19}$"
# The most one order can cost: every bound of an order multiplied (catalog and orders keep
# to theirs). Far below SQLite's 64-bit integers, so no sum of amounts can overflow.
MAX_AMOUNT_CENTS = 10_000_000_000


class Payments:
    name = "payments"

    def __init__(self, db: Database, faults: FaultBoard) -> None:
        self.db = db
        self.faults = faults
        with db.transaction() as conn:
            # status: captured, refunded, or voided (refunded before any charge arrived: a
            # late charge of the order is refused, so money never moves after an undo).
            conn.execute(
                "CREATE TABLE IF NOT EXISTS payments (order_id TEXT PRIMARY KEY, payment_id TEXT NOT NULL,"
                f" amount_cents INTEGER NOT NULL CHECK (amount_cents BETWEEN 0 AND {MAX_AMOUNT_CENTS}),"
                " status TEXT NOT NULL CHECK (status IN ('captured', 'refunded', 'voided')))"
            )

    def charge(self, order_id: str, amount_cents: int, card: str) -> dict:
        """Charging the same order again returns the first charge instead of charging twice."""
        self.faults.apply(self.name)
        if not 0 < amount_cents <= MAX_AMOUNT_CENTS:
            raise ShopError(422, f"amount_cents must be 1 to {MAX_AMOUNT_CENTS}")
        if not CARD.fullmatch(card):
            raise ShopError(422, "card must be 12 to 19 digits (0-9)")
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
        if row["status"] != "captured":
            raise ShopError(409, f"order {order_id} was undone (payment {row['status']}); it is not charged",
                            order_id=order_id)
        return dict(row)

    def refund(self, order_id: str) -> dict:
        """Refund the order's charge; with no charge yet, void the order so none can follow."""
        self.faults.apply(self.name)
        with self.db.transaction() as conn:
            conn.execute("UPDATE payments SET status = 'refunded' WHERE order_id = ? AND status = 'captured'",
                         (order_id,))
            conn.execute("INSERT INTO payments VALUES (?, ?, 0, 'voided') ON CONFLICT DO NOTHING",
                         (order_id, f"void-{uuid.uuid4().hex[:12]}"))
            row = conn.execute("SELECT * FROM payments WHERE order_id = ?", (order_id,)).fetchone()
        return dict(row)

    def get(self, order_id: str) -> dict:
        self.faults.apply(self.name)
        rows = self.db.query("SELECT * FROM payments WHERE order_id = ?", (order_id,))
        if not rows:
            raise ShopError(404, f"no payment for order {order_id!r}")
        return dict(rows[0])
