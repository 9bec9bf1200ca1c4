"""The gateway: the shop's single entry point. It serves the public API and nothing else.

- An explicit route table (PUBLIC_ROUTES: method + path pattern -> service). Anything else
  under /api is 404 (no such path) or 405 (no such method), naming what exists; the saga's
  internal endpoints (reservations, payments) and the services' /admin routes are never
  reachable through it.
- Paths are checked and normalised before routing (limits.py: no dot segments, no encoded
  slashes, a sane length) and forwarded encoded again from their decoded segments.
- Bodies are at most max_body_bytes; headers it forwards must be printable ASCII.
- Each service has a timeout (gateway_timeouts) and a cap on calls in flight
  (gateway_max_in_flight, always on): a hung service gets 503s and 504s, and cannot take
  the worker threads the other routes need.
- Its OpenAPI document is built from the same routers the monolith serves (api.public_routers),
  with the gateway's own error answers added.

Its upstream table (routing.Upstreams) can be changed at run time, which is how the blue-green
lab moves traffic from one copy of a service to another without a failed request: the
gateway checks that the new copy is ready, then sends every new request there, while
requests already on their way to the old copy finish there.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from . import __version__
from .api import public_routers
from .config import Settings
from .errors import ShopError
from .faults import FaultBoard
from .dynamic import LiveConfig, config_router, connect
from .limits import InFlightCap, RequestLimits, encoded_path
from .orders import IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_RULE
from .routing import Route, Upstreams, find_route, refusal, request_with_one_retry, routes_router
from .observability import Metrics, instrument, make_tracer, outbound_headers, setup_logging
from .operations import GATEWAY_ERRORS, add_error_handlers, add_metrics_route, document_errors, operations_router, \
    resilience_router

log = logging.getLogger("shop.gateway")

FORWARDED_HEADERS = ("content-type", "idempotency-key", "accept")
SERVICES = ("catalog", "inventory", "orders")  # what the public routes lead to


def route_timeouts(settings: Settings) -> dict[str, float]:
    """Seconds to wait for each service: the default, or what gateway_timeouts says."""
    default = settings.gateway_timeout_s if settings.resilience else settings.upstream_timeout_s
    timeouts = dict.fromkeys(SERVICES, default)
    for part in filter(None, (p.strip() for p in settings.gateway_timeouts.split(","))):
        service, _, seconds = part.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if service.strip() not in timeouts or not 0 < value <= 300:
            raise SystemExit(f"SHOP_GATEWAY_TIMEOUTS: {part!r} is not SERVICE=SECONDS (0 < SECONDS <= 300) "
                             f"with SERVICE one of {', '.join(SERVICES)}")
        timeouts[service.strip()] = value
    return timeouts


def forwarded_headers(request: Request) -> dict:
    """The headers sent on; httpx (and HTTP) take only ASCII, so anything else is the caller's 400."""
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED_HEADERS}
    key = headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):  # the orders service's own rule and words
        raise ShopError(400, IDEMPOTENCY_KEY_RULE)
    headers.update(outbound_headers())
    for name, value in headers.items():
        if not (value.isascii() and value.isprintable()):
            raise ShopError(400, f"the {name.title()} header must be printable ASCII characters")
    return headers


def create_gateway(settings: Settings) -> FastAPI:
    setup_logging("gateway", settings.version, settings.log_level)
    faults = FaultBoard(["gateway"], settings.max_hang_s)
    metrics = Metrics("gateway")
    routes = Upstreams({"catalog": settings.catalog_url, "orders": settings.orders_url,
                        "inventory": settings.inventory_url})
    timeouts = route_timeouts(settings)
    http = httpx.Client(limits=httpx.Limits(max_connections=200))
    # Always on: no service holds more than gateway_max_in_flight of the gateway's 40 threads.
    caps = {name: InFlightCap(name, settings.gateway_max_in_flight) for name in SERVICES}
    # With resilience on, each service also gets its own bulkhead (and breaker).
    # No retries at this level: an order without an Idempotency-Key must not be sent twice
    # (request_with_one_retry already retries what is safe to retry).
    guards = {name: settings.guard(name, retries=0) for name in SERVICES}
    app = FastAPI(title="shop: gateway", version=__version__)
    add_error_handlers(app)
    app.add_middleware(RequestLimits, max_uri_bytes=settings.max_uri_bytes, max_body_bytes=settings.max_body_bytes)
    instrument(app, "gateway", settings.version,
               make_tracer("gateway", settings.otel_exporter, settings.otel_endpoint), metrics,
               settings.instance)

    app.include_router(routes_router(routes), include_in_schema=False)
    live = LiveConfig("gateway")
    connect(app, settings, live, routes)  # with SHOP_REGISTRY, the registry fills the route table
    app.include_router(config_router(live), include_in_schema=False)
    app.include_router(resilience_router([g for g in guards.values() if g]), include_in_schema=False)

    def forward(route: Route, request: Request, path: str, headers: dict, body: bytes) -> Response:
        """In a worker thread: send the request on and pass the answer back, errors included."""
        faults.apply("gateway")
        # A retry is safe for reads and for orders that carry an Idempotency-Key.
        idempotent = request.method == "GET" or "idempotency-key" in headers

        def send() -> tuple[httpx.Response, str]:
            try:
                return request_with_one_retry(
                    http, request.method, lambda avoid=None: routes.pick(route.service, avoid), path, idempotent,
                    params=list(request.query_params.multi_items()), content=body, headers=headers,
                    timeout=timeouts[route.service],
                )
            except httpx.TimeoutException:
                raise ShopError(504, f"{route.service} did not answer within {timeouts[route.service]:g} s",
                                service=route.service, timeout=True)
            except httpx.TransportError as err:
                raise ShopError(503, f"{route.service} is unavailable ({err.__class__.__name__})", service=route.service)

        guard = guards[route.service]
        # The gateway passes answers through, errors included: its guard only sees its own
        # failures to reach a service (so no retries of a service's 5xx here).
        answer, upstream = guard.call(send) if guard else send()
        # The gateway's own X-Served-By/X-Instance are added by its middleware; the
        # upstream's are passed back as X-Upstream and X-Upstream-Instance.
        kept = {k: v for k, v in answer.headers.items() if k in ("content-type", "idempotent-replayed")}
        kept["X-Upstream"] = answer.headers.get("x-served-by", route.service)
        kept["X-Upstream-Instance"] = answer.headers.get("x-instance", upstream)
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    @app.api_route("/api", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    @app.api_route("/api/{_:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def proxy(request: Request) -> Response:
        # The path is already checked and decoded by RequestLimits: its segments hold no "/".
        segments = request.scope["path"].strip("/").split("/")
        try:
            route = find_route(request.method, segments)
        except ShopError as err:
            return refusal(err)
        request.state.route_label = route.label
        headers = forwarded_headers(request)
        body = await request.body()  # in the event loop; the waiting for the service is in a thread
        with caps[route.service]:  # taken before a thread is: a refused call costs none
            return await run_in_threadpool(forward, route, request, encoded_path(segments), headers, body)

    app.include_router(operations_router(faults, []))
    add_metrics_route(app, metrics)
    # The document lists what the gateway forwards, from the routers the monolith serves.
    document_errors(app, GATEWAY_ERRORS, extra_routes=[r for router in public_routers(None, None, None, None)
                                                       for r in router.routes])
    app.state.settings, app.state.routes = settings, routes
    log.info("started", extra={"routes": routes.snapshot(), "port": settings.port, "timeouts": timeouts,
                               "max_in_flight": settings.gateway_max_in_flight})
    return app
