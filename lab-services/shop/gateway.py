"""The gateway: the shop's single entry point. It routes by path prefix to the services.

Its route table can be changed at run time (PUT /admin/routes/{service}), which is how the
blue-green lab moves traffic from one copy of a service to another without a failed request:
the gateway checks that the new copy is ready, then sends every new request there, while
requests already on their way to the old copy finish there.
"""

from __future__ import annotations

import itertools
import logging
import threading

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from . import __version__
from .config import Settings
from .errors import ShopError
from .faults import FaultBoard
from .observability import Metrics, instrument, make_tracer, outbound_headers, setup_logging

log = logging.getLogger("shop.gateway")

PREFIXES = {"products": "catalog", "orders": "orders", "inventory": "inventory", "payments": "payments"}
FORWARDED_HEADERS = ("content-type", "idempotency-key", "accept")


class RouteTable:
    """Service name -> list of upstream URLs; requests take them in turn (round-robin)."""

    def __init__(self, settings: Settings) -> None:
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._routes = {
            "catalog": [settings.catalog_url],
            "orders": [settings.orders_url],
            "inventory": [settings.inventory_url],
            "payments": [settings.payments_url],
        }

    def snapshot(self) -> dict:
        with self._lock:
            return {name: list(urls) for name, urls in self._routes.items()}

    def upstream(self, service: str) -> str:
        with self._lock:
            urls = self._routes[service]
            return urls[next(self._turn) % len(urls)]

    def switch(self, service: str, urls: list[str], http: httpx.Client) -> dict:
        """Point a route at new upstreams, but only once every one of them is ready."""
        if service not in self._routes:
            raise ShopError(404, f"no route for {service!r}; routes: {', '.join(self._routes)}")
        urls = [u.rstrip("/") for u in urls]
        for url in urls:
            try:
                probe = http.get(f"{url}/health/ready", timeout=2)
            except httpx.HTTPError as err:
                raise ShopError(409, f"refusing to switch {service}: {url} cannot be reached ({err.__class__.__name__})")
            if probe.status_code != 200:
                raise ShopError(409, f"refusing to switch {service}: {url} is not ready ({probe.status_code})")
        with self._lock:
            previous, self._routes[service] = self._routes[service], urls
        log.info("route switched", extra={"route": service, "from": previous, "to": urls})
        return {"service": service, "urls": urls, "previous": previous}


def create_gateway(settings: Settings) -> FastAPI:
    setup_logging("gateway", settings.version, settings.log_level)
    faults = FaultBoard(["gateway"])
    metrics = Metrics("gateway")
    routes = RouteTable(settings)
    http = httpx.Client(timeout=settings.upstream_timeout_s, limits=httpx.Limits(max_connections=200))
    app = FastAPI(title="shop: gateway", version=__version__)

    from .api import add_error_handlers, add_metrics_route, operations_router

    add_error_handlers(app)
    instrument(app, "gateway", settings.version,
               make_tracer("gateway", settings.otel_exporter, settings.otel_endpoint), metrics,
               settings.instance)

    @app.get("/admin/routes")
    def list_routes() -> dict:
        return routes.snapshot()

    @app.put("/admin/routes/{service}")
    def switch_route(service: str, body: dict) -> dict:
        urls = body.get("urls")
        if (not isinstance(urls, list) or not urls
                or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls)):
            raise ShopError(422, 'body must be {"urls": ["http://host:port", ...]} with at least one URL')
        return routes.switch(service, urls, http)

    @app.api_route("/api/{prefix}{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    def proxy(prefix: str, rest: str, request: Request, body: bytes = b"") -> Response:
        faults.apply("gateway")
        service = PREFIXES.get(prefix)
        if service is None:
            raise ShopError(404, f"no route for /api/{prefix}; routes: {', '.join('/api/' + p for p in PREFIXES)}")
        request.state.route_label = f"/api/{prefix}"
        upstream = routes.upstream(service)
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED_HEADERS}
        headers.update(outbound_headers())
        try:
            answer = http.request(
                request.method, f"{upstream}/api/{prefix}{rest}", params=request.query_params,
                content=request.state.body, headers=headers,
            )
        except httpx.TimeoutException:
            raise ShopError(504, f"{service} did not answer in time", service=service)
        except httpx.TransportError as err:
            raise ShopError(503, f"{service} is unavailable ({err.__class__.__name__})", service=service)
        # The gateway's own X-Served-By/X-Instance are added by its middleware; the
        # upstream's are passed back as X-Upstream and X-Upstream-Instance.
        kept = {k: v for k, v in answer.headers.items() if k in ("content-type", "idempotent-replayed")}
        kept["X-Upstream"] = answer.headers.get("x-served-by", service)
        kept["X-Upstream-Instance"] = answer.headers.get("x-instance", upstream)
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    @app.middleware("http")
    async def keep_body(request: Request, call_next):
        # The proxy is a sync function; read the body here, in the event loop, once.
        request.state.body = await request.body()
        return await call_next(request)

    app.include_router(operations_router(faults, []))
    add_metrics_route(app, metrics)
    app.state.settings, app.state.routes = settings, routes
    log.info("started", extra={"routes": routes.snapshot(), "port": settings.port})
    return app
