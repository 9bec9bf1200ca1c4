"""HTTP clients with the same methods as the in-process modules, for the microservices.

Answers from a peer keep their status and message; a peer that cannot be reached becomes a
503 naming the peer, so the caller sees which dependency failed. So does a peer that refuses
this service's credential (401, 403): that is the deployment's fault, not the customer's.

Every value put into a URL is percent-encoded as one path segment (segment()): a product id
like `p-1/../x` or `p-1?y` must name that product, not another path.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from .errors import ShopError
from .limits import segment_problem
from .observability import outbound_headers
from .resilience import Guard
from .routing import Upstreams, request_with_one_retry
from .servicecred import credential


def segment(value: str) -> str:
    """`value` as one path segment of a URL: nothing in it can split, end or climb the path."""
    return quote(value, safe="")


class RemoteModule:
    def __init__(self, name: str, upstreams: Upstreams, timeout_s: float, guard: Guard | None = None,
                 service_key: str = "", caller: str = "") -> None:
        self.name = name
        self.upstreams = upstreams
        self.guard = guard  # resilience: timeout, retries, circuit breaker, bulkhead (or None)
        self.service_key, self.caller = service_key, caller  # who this client says it is (servicecred)
        self._http = httpx.Client(timeout=timeout_s)

    def call(self, method: str, path: str, json: dict | None = None) -> dict:
        if self.guard is None:
            return self._call(method, path, json)
        return self.guard.call(lambda: self._call(method, path, json))

    def _call(self, method: str, path: str, json: dict | None) -> dict:
        try:
            # Every peer call is idempotent (keyed by order id), so a broken connection is retried once.
            response, _ = request_with_one_retry(self._http, method, lambda avoid=None: self.upstreams.pick(self.name, avoid), path,
                                                 True, json=json, headers=self._headers())
        except httpx.TimeoutException as err:
            raise ShopError(503, f"{self.name} did not answer in time", module=self.name, timeout=True) from err
        except httpx.TransportError as err:
            raise ShopError(503, f"{self.name} is unavailable ({err.__class__.__name__})", module=self.name) from err
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code in (401, 403):
            raise ShopError(503, f"{self.name} refused {self.caller or 'this service'}'s credential: "
                                 f"{body.get('error', response.status_code)}", module=self.name)
        if response.status_code >= 400:
            status = response.status_code if response.status_code < 500 else 503
            message = body.get("error", f"{self.name} answered {response.status_code}")
            details = {k: v for k, v in body.items() if k != "error"}
            if status >= 500:  # a 4xx passes through unchanged, as the monolith would answer it
                details.setdefault("module", self.name)
            raise ShopError(status, message, **details)
        return body

    def _headers(self) -> dict:
        return {**outbound_headers(), **credential(self.service_key, self.caller, self.name)}

    def close(self) -> None:
        self._http.close()


class RemoteCatalog(RemoteModule):
    def get_product(self, product_id: str) -> dict:
        if segment_problem(product_id) or not product_id:
            # No path can name it (the catalog refuses such paths): answer as the catalog
            # module does for an id it does not have, as the monolith would.
            raise ShopError(404, f"unknown product {product_id!r}", product_id=product_id)
        return self.call("GET", f"/api/products/{segment(product_id)}")


class RemoteInventory(RemoteModule):
    def reserve(self, order_id: str, items: list[dict]) -> dict:
        return self.call("POST", "/api/inventory/reservations", {"order_id": order_id, "items": items})

    def release(self, order_id: str) -> dict:
        return self.call("DELETE", f"/api/inventory/reservations/{segment(order_id)}")


class RemotePayments(RemoteModule):
    def charge(self, order_id: str, amount_cents: int, card: str) -> dict:
        return self.call("POST", "/api/payments", {"order_id": order_id, "amount_cents": amount_cents, "card": card})

    def refund(self, order_id: str) -> dict:
        return self.call("POST", f"/api/payments/{segment(order_id)}/refund")
