"""Catalog: the products and their prices. Read-mostly, so it keeps them cached in memory."""

from __future__ import annotations

import itertools

from .db import Database
from .errors import ShopError
from .faults import FaultBoard

_ADJECTIVES = ["Sturdy", "Quiet", "Bright", "Compact", "Classic", "Rapid", "Gentle", "Bold", "Smart", "Tiny"]
_NOUNS = ["Kettle", "Lamp", "Backpack", "Keyboard", "Mug", "Notebook", "Headphones", "Chair", "Bottle", "Clock"]
MAX_PRICE_CENTS = 1_000_000  # with orders' bounds, an order's total stays within payments.MAX_AMOUNT_CENTS


def product_id(n: int) -> str:
    return f"p-{n:04d}"


def seed_products(count: int) -> list[dict]:
    """The same products every time, so monolith and microservices answer alike."""
    names = itertools.cycle(f"{a} {n}" for a in _ADJECTIVES for n in _NOUNS)
    return [
        {
            "id": product_id(i),
            "name": f"{next(names)} {i}",
            "price_cents": 199 + (i * 7919) % 9800,
            "description": f"Product {i} of the course shop.",
        }
        for i in range(1, count + 1)
    ]


class Catalog:
    name = "catalog"

    def __init__(self, db: Database, faults: FaultBoard, product_count: int, live=None) -> None:
        self.db = db
        self.faults = faults
        self.live = live  # dynamic.LiveConfig: sale_percent can change while the catalog runs
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
                f" price_cents INTEGER NOT NULL CHECK (price_cents BETWEEN 1 AND {MAX_PRICE_CENTS}),"
                " description TEXT NOT NULL)"
            )
            if conn.execute("SELECT COUNT(*) FROM products").fetchone()[0] == 0:
                conn.executemany(
                    "INSERT INTO products VALUES (:id, :name, :price_cents, :description)",
                    seed_products(product_count),
                )
        # Why a cache: the catalog is read on every page and every order, and rarely changes.
        self._by_id = {row["id"]: dict(row) for row in db.query("SELECT * FROM products ORDER BY id")}

    def list_products(self, limit: int = 20, offset: int = 0) -> dict:
        self.faults.apply(self.name)
        if not 1 <= limit <= 500 or offset < 0:
            raise ShopError(422, "limit must be 1..500 and offset >= 0")
        ids = sorted(self._by_id)[offset : offset + limit]
        return {"products": [self._priced(self._by_id[i]) for i in ids], "total": len(self._by_id)}

    def get_product(self, product_id: str) -> dict:
        self.faults.apply(self.name)
        product = self._by_id.get(product_id)
        if product is None:
            raise ShopError(404, f"unknown product {product_id!r}", product_id=product_id)
        return self._priced(product)

    def _priced(self, product: dict) -> dict:
        """The product at today's price: a sale (live config) lowers price_cents, which
        orders then charge; list_price_cents keeps the normal price."""
        sale = self.live.number("sale_percent", 0) if self.live else 0
        if not sale:
            return product
        return {**product, "price_cents": round(product["price_cents"] * (100 - sale) / 100),
                "list_price_cents": product["price_cents"], "sale_percent": sale}
