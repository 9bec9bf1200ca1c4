"""HTTP API of every module, and the app of each service (or of the whole monolith)."""

from __future__ import annotations

import logging
import threading

from fastapi import APIRouter, FastAPI, Header, Response
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
from .observability import Metrics, instrument, make_tracer, setup_logging
from .operations import add_error_handlers, add_metrics_route, operations_router, resilience_router
from .orders import Orders
from .payments import Payments
from .routing import Upstreams, routes_router

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
    router = APIRouter(prefix="/api/inventory", tags=["inventory"])

    @router.get("/{product_id}")
    def stock(product_id: str) -> dict:
        return inventory.stock(product_id)

    @router.post("/reservations", status_code=201)
    def reserve(body: ReservationRequest) -> dict:
        return inventory.reserve(body.order_id, [line.model_dump() for line in body.items])

    @router.delete("/reservations/{order_id}")
    def release(order_id: str) -> dict:
        return inventory.release(order_id)

    return router


def payments_router(payments: Payments) -> APIRouter:
    router = APIRouter(prefix="/api/payments", tags=["payments"])

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
            peers = {"catalog": RemoteCatalog("catalog", upstreams, timeout, settings.guard("catalog")),
                     "inventory": RemoteInventory("inventory", upstreams, timeout, settings.guard("inventory")),
                     "payments": RemotePayments("payments", upstreams, timeout, settings.guard("payments"))}
            modules["guards"] = [peer.guard for peer in peers.values() if peer.guard]
        modules["orders"] = Orders(db, faults, **peers)
    return {"db": db, **modules}


def create_app(settings: Settings) -> FastAPI:
    """The app of one service, or of the whole monolith (the gateway's is gateway.create_gateway)."""
    setup_logging(settings.service, settings.version, settings.log_level)
    served = list(MODULES) if settings.service == "monolith" else [settings.service]
    faults = FaultBoard(served)
    metrics = Metrics(settings.service)
    live = LiveConfig(settings.service)
    parts = build_modules(settings, faults, live)
    app = FastAPI(title=f"shop: {settings.service}", version=__version__)
    add_error_handlers(app)
    instrument(app, settings.service, settings.version,
               make_tracer(settings.service, settings.otel_exporter, settings.otel_endpoint), metrics,
               settings.instance)
    routers = {"catalog": catalog_router, "inventory": inventory_router, "payments": payments_router}
    for name, make_router in routers.items():
        if name in parts:
            app.include_router(make_router(parts[name]))
    if "orders" in parts:
        app.include_router(orders_router(parts["orders"], metrics))
        # Pending orders older than the recovery age were left by a crash; younger ones may
        # belong to another copy of this service that is still placing them.
        undone = parts["orders"].recover_pending(older_than_s=settings.recovery_age_s)
        if undone:
            log.warning("undid orders left pending by an earlier crash", extra={"count": undone})
        _start_recovery(parts["orders"], settings.recovery_age_s)
    if "upstreams" in parts:
        app.include_router(routes_router(parts["upstreams"]))
    connect(app, settings, live, parts.get("upstreams"))
    app.include_router(config_router(live))
    app.include_router(resilience_router(parts.get("guards", [])))
    app.include_router(operations_router(faults, [("database", parts["db"].ping)]))
    add_metrics_route(app, metrics)
    app.state.settings, app.state.faults, app.state.parts = settings, faults, parts
    log.info("started", extra={"modules": served, "port": settings.port, "db": str(settings.db_path)})
    return app
