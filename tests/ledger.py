"""What the shop's databases hold, read straight from their SQLite files, and the books
that must balance after any run: every unit of stock and every cent accounted for."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass


@dataclass
class Ledger:
    orders: dict          # order id -> {status, items, total_cents, idempotency_key}
    available: int        # units in stock, all products
    reserved: dict        # order id -> Counter(product -> units held)
    payments: dict        # order id -> (status, amount_cents)

    def confirmed(self) -> dict:
        return {oid: o for oid, o in self.orders.items() if o["status"] == "confirmed"}

    def unfinished(self) -> list[str]:
        return sorted(oid for oid, o in self.orders.items() if o["status"] != "confirmed")


def _rows(path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def read(deployment) -> Ledger:
    files = {p.stem: p for p in deployment.database_files()}

    def db(module: str):
        return files.get(module) or files["monolith"]

    orders = {r["id"]: {"status": r["status"], "items": json.loads(r["items"]), "total_cents": r["total_cents"],
                        "idempotency_key": r["idempotency_key"]}
              for r in _rows(db("orders"), "SELECT * FROM orders")}
    available = _rows(db("inventory"), "SELECT COALESCE(SUM(available), 0) AS n FROM stock")[0]["n"]
    reserved: dict = {}
    for r in _rows(db("inventory"), "SELECT order_id, product_id, quantity FROM reservations WHERE quantity > 0"):
        reserved.setdefault(r["order_id"], Counter())[r["product_id"]] += r["quantity"]
    payments = {r["order_id"]: (r["status"], r["amount_cents"])
                for r in _rows(db("payments"), "SELECT order_id, status, amount_cents FROM payments")}
    return Ledger(orders, available, reserved, payments)


def imbalances(ledger: Ledger, starting_stock: int) -> list[str]:
    """Every way the books do not balance; empty when all is well."""
    found = []
    held = sum(sum(c.values()) for c in ledger.reserved.values())
    if ledger.available + held != starting_stock:
        found.append(f"stock {ledger.available} + reserved {held} != starting stock {starting_stock}")
    confirmed = ledger.confirmed()
    for oid, order in confirmed.items():
        wanted = Counter()
        for line in order["items"]:
            wanted[line["product_id"]] += line["quantity"]
        if ledger.reserved.get(oid, Counter()) != wanted:
            found.append(f"confirmed order {oid} holds {dict(ledger.reserved.get(oid, {}))}, not {dict(wanted)}")
        status, amount = ledger.payments.get(oid, ("none", 0))
        if status != "captured" or amount != order["total_cents"]:
            found.append(f"confirmed order {oid} of {order['total_cents']} cents has payment {status} {amount}")
    for oid in set(ledger.reserved) - set(confirmed) - set(ledger.orders):
        found.append(f"stock held for order {oid}, which does not exist")
    captured = {oid: amount for oid, (status, amount) in ledger.payments.items() if status == "captured"}
    for oid in set(captured) - set(ledger.orders):
        found.append(f"{captured[oid]} cents captured for order {oid}, which does not exist")
    charged, owed = sum(captured.values()), sum(o["total_cents"] for o in confirmed.values())
    if charged != owed:
        found.append(f"charges minus refunds {charged} != confirmed totals {owed}")
    return found
