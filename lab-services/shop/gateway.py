"""The gateway: the shop's single entry point. It routes by path prefix to the services.

Its route table (routing.Upstreams) can be changed at run time, which is how the blue-green
lab moves traffic from one copy of a service to another without a failed request: the
gateway checks that the new copy is ready, then sends every new request there, while
requests already on their way to the old copy finish there.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI, Request, Response

from . import __version__
from .config import Settings
from .errors import ShopError
from .faults import FaultBoard
from .dynamic import LiveConfig, config_router, connect
from .routing import Upstreams, request_with_one_retry, routes_router
from .observability import Metrics, instrument, make_tracer, outbound_headers, setup_logging
from .operations import add_error_handlers, add_metrics_route, operations_router, resilience_router

log = logging.getLogger("shop.gateway")

PREFIXES = {"products": "catalog", "orders": "orders", "inventory": "inventory", "payments": "payments"}
FORWARDED_HEADERS = ("content-type", "idempotency-key", "accept")


def create_gateway(settings: Settings) -> FastAPI:
    setup_logging("gateway", settings.version, settings.log_level)
    faults = FaultBoard(["gateway"])
    metrics = Metrics("gateway")
    routes = Upstreams({"catalog": settings.catalog_url, "orders": settings.orders_url,
                        "inventory": settings.inventory_url, "payments": settings.payments_url})
    timeout = settings.gateway_timeout_s if settings.resilience else settings.upstream_timeout_s
    http = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=200))
    # With resilience on, each service gets its own bulkhead (and breaker): a hung orders
    # service can hold at most bulkhead_size of the gateway's threads, not all of them.
    # No retries at this level: an order without an Idempotency-Key must not be sent twice
    # (request_with_one_retry already retries what is safe to retry).
    guards = {name: settings.guard(name, retries=0) for name in PREFIXES.values()}
    app = FastAPI(title="shop: gateway", version=__version__)
    add_error_handlers(app)
    instrument(app, "gateway", settings.version,
               make_tracer("gateway", settings.otel_exporter, settings.otel_endpoint), metrics,
               settings.instance)

    app.include_router(routes_router(routes))
    live = LiveConfig("gateway")
    connect(app, settings, live, routes)  # with SHOP_REGISTRY, the registry fills the route table
    app.include_router(config_router(live))
    app.include_router(resilience_router([g for g in guards.values() if g]))

    @app.api_route("/api/{prefix}{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    def proxy(prefix: str, rest: str, request: Request, body: bytes = b"") -> Response:
        faults.apply("gateway")
        service = PREFIXES.get(prefix)
        if service is None:
            raise ShopError(404, f"no route for /api/{prefix}; routes: {', '.join('/api/' + p for p in PREFIXES)}")
        request.state.route_label = f"/api/{prefix}"
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED_HEADERS}
        headers.update(outbound_headers())
        # A retry is safe for reads and for orders that carry an Idempotency-Key.
        idempotent = request.method in ("GET", "PUT", "DELETE") or "idempotency-key" in headers
        def forward() -> tuple[httpx.Response, str]:
            try:
                return request_with_one_retry(
                    http, request.method, lambda: routes.pick(service), f"/api/{prefix}{rest}", idempotent,
                    params=request.query_params, content=request.state.body, headers=headers,
                )
            except httpx.TimeoutException:
                raise ShopError(504, f"{service} did not answer in time", service=service, timeout=True)
            except httpx.TransportError as err:
                raise ShopError(503, f"{service} is unavailable ({err.__class__.__name__})", service=service)

        guard = guards[service]
        # The gateway passes answers through, errors included: its guard only sees its own
        # failures to reach a service (so no retries of a service's 5xx here).
        answer, upstream = guard.call(forward) if guard else forward()
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
