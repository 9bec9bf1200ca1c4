"""HTTP API of every module, and the app of each service (or of the whole monolith)."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict

from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from . import __version__
from .catalog import Catalog
from .dynamic import LiveConfig, config_router, connect
from .clients import RemoteCatalog, RemoteInventory, RemotePayments
from .config import MODULES, Settings
from .db import Database
from .errors import ShopError
from .faults import FaultBoard, crash_soon
from .inventory import Inventory
from .observability import Metrics, instrument, make_tracer, setup_logging
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


def resilience_router(guards: list) -> APIRouter:
    """GET /admin/resilience: each protected peer's circuit state (empty when protection is off)."""
    router = APIRouter(tags=["operations"])

    @router.get("/admin/resilience")
    def resilience_state() -> dict:
        return {"enabled": bool(guards), "peers": [guard.state() for guard in guards]}

    return router


def operations_router(faults: FaultBoard, ready_checks: list) -> APIRouter:
    """Health, fault knobs. The same on every service and on the monolith."""
    router = APIRouter(tags=["operations"])

    @router.get("/health/live")
    def live() -> dict:
        for module in faults.modules:
            faults.alive(module)
        return {"status": "alive"}

    @router.get("/health/ready")
    def ready() -> JSONResponse:
        problems = [f"{m} set not ready" for m in faults.modules if not faults.get(m).ready]
        problems += [name for name, check in ready_checks if not check()]
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @router.get("/admin/faults")
    def list_faults() -> dict:
        return {m: asdict(faults.get(m)) for m in faults.modules}

    @router.put("/admin/faults/{module}")
    def set_faults(module: str, changes: dict) -> dict:
        return asdict(faults.update(module, changes))

    @router.delete("/admin/faults")
    def reset_faults() -> dict:
        faults.reset()
        return {m: asdict(faults.get(m)) for m in faults.modules}

    @router.post("/admin/crash/{module}", status_code=202)
    def crash(module: str) -> dict:
        faults.get(module)  # 404 for a module not served here
        log.warning("crash requested", extra={"shop_module": module})
        crash_soon()
        return {"crashing": module, "processes_ending": "this one"}

    return router


# -- errors: always JSON with a message ----------------------------------------------------
def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShopError)
    async def shop_error(_: Request, err: ShopError) -> JSONResponse:
        return JSONResponse(err.to_json(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        content_type = request.headers.get("content-type", "")
        if request.method in ("POST", "PUT") and "json" not in content_type:
            return JSONResponse(
                {"error": f"send the body as JSON with Content-Type: application/json (got {content_type or 'none'!r})"},
                status_code=415,
            )
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"error": "malformed JSON in the request body"}, status_code=400)
        problems = [_describe(e) for e in errors]
        return JSONResponse({"error": "invalid request: " + "; ".join(problems), "problems": problems}, status_code=422)


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
    if settings.service == "gateway":
        from .gateway import create_gateway

        return create_gateway(settings)
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


def add_metrics_route(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
