"""Where a service finds the services it calls: name -> list of URLs, taken in turn.

The gateway routes customers' requests with it, and the orders service its own calls to
catalog, inventory and payments. Both can be re-pointed at run time (PUT /admin/routes/NAME),
which is how a blue-green switch moves every caller, not just the front door. (Part II
replaces this hand-made table with a service registry, Part III with Kubernetes Services.)

It also holds the shop's public routes (PUBLIC_ROUTES): which requests the gateway forwards,
to which service.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Callable

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .errors import ShopError

log = logging.getLogger("shop.routing")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # a {name} stands for exactly one path segment
    service: str

    def matches(self, segments: list[str]) -> bool:
        parts = self.pattern.strip("/").split("/")
        return len(parts) == len(segments) and all(p.startswith("{") or p == s for p, s in zip(parts, segments))

    @property
    def label(self) -> str:
        """The metrics label: the route's prefix (/api/products), as the services' dashboards use."""
        return "/".join(self.pattern.split("/")[:3])


# The shop's public API, and only it: the operations of api.public_routers. The gateway routes
# by it; the monolith answers unknown /api paths from it, as the gateway does.
PUBLIC_ROUTES = (
    Route("GET", "/api/products", "catalog"),
    Route("GET", "/api/products/{product_id}", "catalog"),
    Route("GET", "/api/inventory/{product_id}", "inventory"),  # stock, read-only
    Route("POST", "/api/orders", "orders"),
    Route("GET", "/api/orders", "orders"),
    Route("GET", "/api/orders/{order_id}", "orders"),
)
SERVICES = ("catalog", "inventory", "orders")


def refusal(err: ShopError) -> JSONResponse:
    """find_route's 404 or 405 as an answer (a 405 names the allowed methods in Allow)."""
    headers = {"Allow": ", ".join(err.details["allowed"])} if err.status == 405 else None
    return JSONResponse(err.to_json(), status_code=err.status, headers=headers)


def find_route(method: str, segments: list[str]) -> Route:
    """The route for a request, or ShopError 404 (no such path) or 405 (no such method)."""
    same_path = [route for route in PUBLIC_ROUTES if route.matches(segments)]
    for route in same_path:
        if route.method == method:
            return route
    path = "/" + "/".join(segments)
    if same_path:
        allowed = sorted({route.method for route in same_path})
        raise ShopError(405, f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}", allowed=allowed)
    known = ", ".join(f"{route.method} {route.pattern}" for route in PUBLIC_ROUTES)
    raise ShopError(404, f"no route for {method} {path}; the shop serves: {known}")


# httpx errors after which a request may be sent again. ConnectError: it never left. The
# other two also happen when a pooled keep-alive connection was closed by a server that
# has since gone (a replaced pod, a restarted process): safe to repeat only if idempotent.
NEVER_SENT = (httpx.ConnectError,)
MAYBE_SENT = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def request_with_one_retry(http: httpx.Client, method: str, pick: Callable[..., str], path: str,
                           idempotent: bool, **kwargs) -> tuple[httpx.Response, str]:
    """Send to an upstream from `pick`; on a broken connection, once more to another copy.

    Without this, the first request after an upstream restarts can fail even though another
    copy (or the new pod) is ready: a rolling update would lose requests. The retry avoids the
    copy that just failed (`pick(avoid=...)`): with a shared round-robin counter, other
    requests move it meanwhile, so "the next pick" could be the dead copy again.
    """
    base = pick()
    try:
        return http.request(method, base + path, **kwargs), base
    except NEVER_SENT as err:
        failure = err
    except MAYBE_SENT as err:
        if not idempotent:
            raise
        failure = err
    retry_base = pick(avoid=base)
    log.info("retrying once", extra={"upstream": base, "retry_upstream": retry_base,
                                      "error": failure.__class__.__name__})
    return http.request(method, retry_base + path, **kwargs), retry_base


class Upstreams:
    def __init__(self, routes: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._routes = {name: [url.rstrip("/")] for name, url in routes.items()}

    def snapshot(self) -> dict:
        with self._lock:
            return {name: list(urls) for name, urls in self._routes.items()}

    def pick(self, name: str, avoid: str | None = None) -> str:
        """The next instance in turn; another than `avoid` if there is one."""
        with self._lock:
            urls = self._routes[name]
            if not urls:
                raise ShopError(503, f"no instance of {name} is registered", service=name)
            others = [url for url in urls if url != avoid] or urls
            return others[next(self._turn) % len(others)]

    def replace(self, name: str, urls: list[str]) -> None:
        """Set a route's instances as a registry lists them (registration is their readiness)."""
        urls = sorted(u.rstrip("/") for u in urls)
        with self._lock:
            previous, self._routes[name] = self._routes[name], urls
        if previous != urls:
            log.info("instances changed", extra={"route": name, "from": previous, "to": urls})

    def switch(self, name: str, urls: list[str], http: httpx.Client) -> dict:
        """Point a route at new upstreams, but only once every one of them is ready."""
        if name not in self._routes:
            raise ShopError(404, f"no route for {name!r}; routes: {', '.join(self._routes)}")
        urls = [u.rstrip("/") for u in urls]
        for url in urls:
            try:
                probe = http.get(f"{url}/health/ready", timeout=2)
            except httpx.HTTPError as err:
                raise ShopError(409, f"refusing to switch {name}: {url} cannot be reached ({err.__class__.__name__})")
            if probe.status_code != 200:
                raise ShopError(409, f"refusing to switch {name}: {url} is not ready ({probe.status_code})")
        with self._lock:
            previous, self._routes[name] = self._routes[name], urls
        log.info("route switched", extra={"route": name, "from": previous, "to": urls})
        return {"service": name, "urls": urls, "previous": previous}


def routes_router(upstreams: Upstreams) -> APIRouter:
    router = APIRouter(tags=["operations"])
    probe = httpx.Client()

    @router.get("/admin/routes")
    def list_routes() -> dict:
        return upstreams.snapshot()

    @router.put("/admin/routes/{name}")
    def switch_route(name: str, body: dict) -> dict:
        urls = body.get("urls")
        if (not isinstance(urls, list) or not urls
                or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls)):
            raise ShopError(422, 'body must be {"urls": ["http://host:port", ...]} with at least one URL')
        return upstreams.switch(name, urls, probe)

    return router
