"""Inventory: units in stock, and reservations held for orders until they are confirmed."""

from __future__ import annotations

from .catalog import product_id
from .db import Database
from .errors import ShopError
from .faults import FaultBoard

MAX_QUANTITY = 100  # units of one product one order may hold (orders.MAX_QUANTITY)
# A reservations row with no product marks an order that was released: a reserve of it that
# arrives late (a slow call still on its way when the order was undone) is refused, so
# stock never stays held for an order that no longer exists.
RELEASED = ""


def _merged(items: list[dict]) -> list[dict]:
    quantities: dict[str, int] = {}
    for item in items:
        quantities[item["product_id"]] = quantities.get(item["product_id"], 0) + item["quantity"]
    return [{"product_id": p, "quantity": q} for p, q in quantities.items()]


class Inventory:
    name = "inventory"

    def __init__(self, db: Database, faults: FaultBoard, product_count: int, initial_stock: int) -> None:
        self.db = db
        self.faults = faults
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS stock (product_id TEXT PRIMARY KEY,"
                " available INTEGER NOT NULL CHECK (available >= 0))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS reservations (order_id TEXT NOT NULL, product_id TEXT NOT NULL,"
                " quantity INTEGER NOT NULL"
                f" CHECK (quantity BETWEEN 1 AND {MAX_QUANTITY} OR (product_id = '' AND quantity = 0)),"
                " PRIMARY KEY (order_id, product_id))"
            )
            if conn.execute("SELECT COUNT(*) FROM stock").fetchone()[0] == 0:
                conn.executemany(
                    "INSERT INTO stock VALUES (?, ?)",
                    [(product_id(i), initial_stock) for i in range(1, product_count + 1)],
                )

    def stock(self, product_id: str) -> dict:
        self.faults.apply(self.name)
        rows = self.db.query("SELECT available FROM stock WHERE product_id = ?", (product_id,))
        if not rows:
            raise ShopError(404, f"unknown product {product_id!r}", product_id=product_id)
        return {"product_id": product_id, "available": rows[0]["available"]}

    def reserve(self, order_id: str, items: list[dict]) -> dict:
        """All items or none; reserving the same order twice changes nothing."""
        self.faults.apply(self.name)
        with self.db.transaction() as conn:
            held = [row["product_id"] for row in
                    conn.execute("SELECT product_id FROM reservations WHERE order_id = ?", (order_id,))]
            if RELEASED in held:
                raise ShopError(409, f"order {order_id} was undone (its reservation released); nothing is reserved",
                                order_id=order_id)
            if held:
                return {"order_id": order_id, "status": "reserved"}
            for item in _merged(items):
                self._take(conn, order_id, item)
        return {"order_id": order_id, "status": "reserved"}

    @staticmethod
    def _take(conn, order_id: str, item: dict) -> None:
        if not 1 <= item["quantity"] <= MAX_QUANTITY:
            raise ShopError(422, f"at most {MAX_QUANTITY} units of one product per order; {item['product_id']}"
                                 f" adds up to {item['quantity']}", product_id=item["product_id"])
        row = conn.execute("SELECT available FROM stock WHERE product_id = ?", (item["product_id"],)).fetchone()
        if row is None:
            raise ShopError(422, f"unknown product {item['product_id']!r}", product_id=item["product_id"])
        if row["available"] < item["quantity"]:
            raise ShopError(
                409,
                f"only {row['available']} of {item['product_id']} in stock",
                product_id=item["product_id"],
                available=row["available"],
            )
        conn.execute(
            "UPDATE stock SET available = available - ? WHERE product_id = ?",
            (item["quantity"], item["product_id"]),
        )
        conn.execute("INSERT INTO reservations VALUES (?, ?, ?)", (order_id, item["product_id"], item["quantity"]))

    def release(self, order_id: str) -> dict:
        """Give reserved units back; releasing twice (or never reserved) is harmless, and
        the order cannot be reserved afterwards."""
        self.faults.apply(self.name)
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT product_id, quantity FROM reservations WHERE order_id = ? AND product_id != ?",
                                (order_id, RELEASED)).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE stock SET available = available + ? WHERE product_id = ?",
                    (row["quantity"], row["product_id"]),
                )
            conn.execute("DELETE FROM reservations WHERE order_id = ?", (order_id,))
            conn.execute("INSERT INTO reservations VALUES (?, ?, 0)", (order_id, RELEASED))
        return {"order_id": order_id, "status": "released" if rows else "none"}
