"""HTTP API of every module, and the app of each service (or of the whole monolith).

The public API (public_routers) is what the monolith serves and what the gateway forwards
and documents. The orders saga's calls to inventory (reservations) and payments are internal:
only the microservices serve them, and only to the orders service (servicecred.py).
"""

from __future__ import annotations

import logging
import threading

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from . import __version__
from .catalog import Catalog
from .dynamic import LiveConfig, config_router, connect
from .clients import RemoteCatalog, RemoteInventory, RemotePayments
from .config import MODULES, Settings
from .db import Database
from .errors import ShopError
from .faults import FaultBoard
from .inventory import Inventory
from .limits import RequestLimits
from .observability import Metrics, instrument, make_tracer, setup_logging
from .operations import EDGE_ERRORS, add_error_handlers, add_metrics_route, document_errors, operations_router, resilience_router
from .orders import Orders
from .payments import Payments
from .routing import Upstreams, find_route, refusal, routes_router
from .servicecred import check_key, require_caller

log = logging.getLogger("shop")


# -- request bodies: validated before any work starts ------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class OrderLine(Strict):
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=100)


class OrderRequest(Strict):
    items: list[OrderLine] = Field(min_length=1, max_length=50)
    card: str = Field(min_length=1, max_length=19)


class ReservationRequest(Strict):
    order_id: str = Field(min_length=1, max_length=64)
    items: list[OrderLine] = Field(min_length=1, max_length=50)


class ChargeRequest(Strict):
    order_id: str = Field(min_length=1, max_length=64)
    amount_cents: int = Field(gt=0)
    card: str = Field(min_length=1, max_length=19)


# -- routers, one per module -------------------------------------------------------------
def catalog_router(catalog: Catalog) -> APIRouter:
    router = APIRouter(prefix="/api/products", tags=["catalog"])

    @router.get("")
    def list_products(limit: int = 20, offset: int = 0) -> dict:
        return catalog.list_products(limit, offset)

    @router.get("/{product_id}")
    def get_product(product_id: str) -> dict:
        return catalog.get_product(product_id)

    return router


def inventory_router(inventory: Inventory) -> APIRouter:
    """Public: stock levels, read-only."""
    router = APIRouter(prefix="/api/inventory", tags=["inventory"])

    @router.get("/{product_id}")
    def stock(product_id: str) -> dict:
        return inventory.stock(product_id)

    return router


def reservations_router(inventory: Inventory, only_callers) -> APIRouter:
    """Internal: the orders saga reserves and releases stock (`only_callers` checks who calls)."""
    router = APIRouter(prefix="/api/inventory", tags=["internal"], include_in_schema=False,
                       dependencies=[Depends(only_callers)])

    @router.post("/reservations", status_code=201)
    def reserve(body: ReservationRequest) -> dict:
        return inventory.reserve(body.order_id, [line.model_dump() for line in body.items])

    @router.delete("/reservations/{order_id}")
    def release(order_id: str) -> dict:
        return inventory.release(order_id)

    return router


def payments_router(payments: Payments, only_callers) -> APIRouter:
    """Internal: the orders saga charges and refunds (`only_callers` checks who calls)."""
    router = APIRouter(prefix="/api/payments", tags=["internal"], include_in_schema=False,
                       dependencies=[Depends(only_callers)])

    @router.post("", status_code=201)
    def charge(body: ChargeRequest) -> dict:
        return payments.charge(body.order_id, body.amount_cents, body.card)

    @router.post("/{order_id}/refund")
    def refund(order_id: str) -> dict:
        return payments.refund(order_id)

    @router.get("/{order_id}")
    def get_payment(order_id: str) -> dict:
        return payments.get(order_id)

    return router


def orders_router(orders: Orders, metrics: Metrics) -> APIRouter:
    router = APIRouter(prefix="/api/orders", tags=["orders"])

    @router.post("", status_code=201)
    def place_order(
        body: OrderRequest, response: Response, idempotency_key: str | None = Header(default=None, max_length=128)
    ) -> dict:
        try:
            order, created = orders.place([line.model_dump() for line in body.items], body.card, idempotency_key)
        except ShopError as err:
            metrics.orders.labels(metrics.service, f"rejected_{err.status}").inc()
            raise
        metrics.orders.labels(metrics.service, "created" if created else "replayed").inc()
        if not created:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
        return order

    @router.get("")
    def list_orders(limit: int = 20) -> dict:
        return orders.list(limit)

    @router.get("/{order_id}")
    def get_order(order_id: str) -> dict:
        return orders.get(order_id)

    return router


def public_routers(catalog: Catalog | None, inventory: Inventory | None, orders: Orders | None,
                   metrics: Metrics | None) -> list[APIRouter]:
    """The shop's public API. The gateway builds its OpenAPI document from these, with no modules."""
    return [catalog_router(catalog), inventory_router(inventory), orders_router(orders, metrics)]


def service_routers(settings: Settings, parts: dict, metrics: Metrics) -> list[APIRouter]:
    """The business routes this process serves. The monolith serves only the public API: its
    modules call each other in-process, so the saga's internal endpoints need not exist there."""
    if settings.service == "monolith":
        return public_routers(parts["catalog"], parts["inventory"], parts["orders"], metrics)

    def only_orders(service: str):
        return require_caller(settings.service_key, service, allowed=("orders",))

    if settings.service == "catalog":
        return [catalog_router(parts["catalog"])]
    if settings.service == "inventory":
        return [reservations_router(parts["inventory"], only_orders("inventory")), inventory_router(parts["inventory"])]
    if settings.service == "payments":
        return [payments_router(parts["payments"], only_orders("payments"))]
    return [orders_router(parts["orders"], metrics)]


def add_unknown_route_answers(app: FastAPI) -> None:
    """Any other /api request gets the gateway's 404 or 405, so the shop's two shapes answer alike.
    Added after the real routes: it sees only what none of them took."""

    @app.api_route("/api", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    @app.api_route("/api/{_:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown_route(request: Request) -> JSONResponse:
        try:
            find_route(request.method, request.scope["path"].strip("/").split("/"))
        except ShopError as err:
            return refusal(err)
        raise ShopError(500, f"{request.method} {request.url.path} is a public route that this app does not serve")


# -- assembling a service -------------------------------------------------------------------
def _start_recovery(orders: Orders, every_s: float) -> None:
    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(every_s):
            try:
                orders.recover_pending(older_than_s=every_s)
            except Exception:  # keep the loop alive; the next round tries again
                log.exception("recovery round failed")

    threading.Thread(target=loop, name="orders-recovery", daemon=True).start()


def build_modules(settings: Settings, faults: FaultBoard, live: LiveConfig | None = None) -> dict:
    """The modules this process serves: all of them for the monolith, one otherwise."""
    served = MODULES if settings.service == "monolith" else (settings.service,)
    db = Database(settings.db_path)  # one file for the monolith, one per microservice
    modules: dict = {}
    if "catalog" in served:
        modules["catalog"] = Catalog(db, faults, settings.product_count, live)
    if "inventory" in served:
        modules["inventory"] = Inventory(db, faults, settings.product_count, settings.initial_stock)
    if "payments" in served:
        modules["payments"] = Payments(db, faults)
    if "orders" in served:
        if settings.service == "monolith":  # the peers are modules in this process
            peers = {name: modules[name] for name in ("catalog", "inventory", "payments")}
        else:  # the peers are other processes, found by URL
            upstreams = Upstreams({"catalog": settings.catalog_url, "inventory": settings.inventory_url,
                                   "payments": settings.payments_url})
            modules["upstreams"] = upstreams
            timeout = settings.call_timeout_s if settings.resilience else settings.upstream_timeout_s
            peers = {name: remote(name, upstreams, timeout, settings.guard(name), settings.service_key, "orders")
                     for name, remote in (("catalog", RemoteCatalog), ("inventory", RemoteInventory),
                                          ("payments", RemotePayments))}
            modules["guards"] = [peer.guard for peer in peers.values() if peer.guard]
        modules["orders"] = Orders(db, faults, **peers)
    return {"db": db, **modules}


def create_app(settings: Settings) -> FastAPI:
    """The app of one service, or of the whole monolith (the gateway's is gateway.create_gateway)."""
    setup_logging(settings.service, settings.version, settings.log_level)
    check_key(settings.service_key)
    served = list(MODULES) if settings.service == "monolith" else [settings.service]
    faults = FaultBoard(served, settings.max_hang_s)
    metrics = Metrics(settings.service)
    live = LiveConfig(settings.service)
    parts = build_modules(settings, faults, live)
    app = FastAPI(title=f"shop: {settings.service}", version=__version__)
    add_error_handlers(app)
    # Added before instrument(), so it runs inside it: refused requests are logged and counted.
    app.add_middleware(RequestLimits, max_uri_bytes=settings.max_uri_bytes, max_body_bytes=settings.max_body_bytes)
    instrument(app, settings.service, settings.version,
               make_tracer(settings.service, settings.otel_exporter, settings.otel_endpoint), metrics,
               settings.instance)
    for router in service_routers(settings, parts, metrics):
        app.include_router(router)
    if settings.service == "monolith":
        add_unknown_route_answers(app)
    if "orders" in parts:
        # Pending orders older than the recovery age were left by a crash; younger ones may
        # belong to another copy of this service that is still placing them.
        undone = parts["orders"].recover_pending(older_than_s=settings.recovery_age_s)
        if undone:
            log.warning("undid orders left pending by an earlier crash", extra={"count": undone})
        _start_recovery(parts["orders"], settings.recovery_age_s)
    # Operations routes stay out of the OpenAPI document: it describes the public API (and health).
    if "upstreams" in parts:
        app.include_router(routes_router(parts["upstreams"]), include_in_schema=False)
    connect(app, settings, live, parts.get("upstreams"))
    app.include_router(config_router(live), include_in_schema=False)
    app.include_router(resilience_router(parts.get("guards", [])), include_in_schema=False)
    app.include_router(operations_router(faults, [("database", parts["db"].ping)]))
    add_metrics_route(app, metrics)
    document_errors(app, EDGE_ERRORS)
    app.state.settings, app.state.faults, app.state.parts = settings, faults, parts
    log.info("started", extra={"modules": served, "port": settings.port, "db": str(settings.db_path)})
    return app
