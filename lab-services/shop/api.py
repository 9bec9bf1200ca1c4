"""HTTP API of every module, and the app of each service (or of the whole monolith).

The public API (public_routers) is what the monolith serves and what the gateway forwards
and documents. The orders saga's calls to inventory (reservations) and payments are internal:
only the microservices serve them, and only to the orders service (servicecred.py).
"""

from __future__ import annotations

import logging
import threading

from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from . import __version__
from .catalog import MAX_PRICE_CENTS, Catalog
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
from .orders import IDEMPOTENCY_KEY, MAX_LINES, MAX_QUANTITY, Orders, quantity_over_limit
from .payments import CARD_PATTERN, MAX_AMOUNT_CENTS, Payments
from .routing import Upstreams, find_route, refusal, routes_router
from .servicecred import check_key, require_caller

log = logging.getLogger("shop")


# -- request bodies: validated before any work starts ------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Ids travel in URL paths between the services: letters, digits, '-' and '_' only.
PRODUCT_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
ORDER_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"


def _at_most_per_product(items: list["OrderLine"]) -> None:
    problem = quantity_over_limit([line.model_dump() for line in items])
    if problem:
        raise PydanticCustomError("quantity_per_product", problem)


class OrderLine(Strict):
    product_id: str = Field(min_length=1, max_length=64, pattern=PRODUCT_ID_PATTERN, examples=["p-0001"])
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class OrderRequest(Strict):
    items: list[OrderLine] = Field(
        min_length=1, max_length=MAX_LINES,
        description=f"Lines of one product each; lines of the same product are added up, to at most"
                    f" {MAX_QUANTITY} units of one product per order.")
    card: str = Field(min_length=12, max_length=19, pattern=CARD_PATTERN, examples=["4242424242424242"],
                      description="12 to 19 ASCII digits. 4000000000000002 is always declined.")

    @model_validator(mode="after")
    def at_most_per_product(self) -> "OrderRequest":
        _at_most_per_product(self.items)
        return self


class ReservationRequest(Strict):
    order_id: str = Field(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN)
    items: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES)

    @model_validator(mode="after")
    def at_most_per_product(self) -> "ReservationRequest":
        _at_most_per_product(self.items)
        return self


class ChargeRequest(Strict):
    order_id: str = Field(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN)
    amount_cents: int = Field(gt=0, le=MAX_AMOUNT_CENTS)
    card: str = Field(min_length=12, max_length=19, pattern=CARD_PATTERN)


# -- answers, as the OpenAPI document describes them ---------------------------------------
class ErrorBody(BaseModel):
    """Every error: a message for a person, and sometimes details (product_id, available, ...)."""
    model_config = ConfigDict(extra="allow")
    error: str = Field(description="what went wrong and what to do about it")


class Product(BaseModel):
    id: str
    name: str
    price_cents: int = Field(ge=1, le=MAX_PRICE_CENTS, description="today's price (after a sale, if any)")
    description: str
    list_price_cents: int | None = Field(None, description="the normal price, only during a sale")
    sale_percent: int | None = Field(None, description="the sale, only during one")


class Stock(BaseModel):
    product_id: str
    available: int = Field(ge=0, description="units in stock and not reserved")


class ProductList(BaseModel):
    products: list[Product]
    total: int


class OrderedItem(BaseModel):
    product_id: str
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    name: str
    unit_price_cents: int


class Order(BaseModel):
    order_id: str
    status: Literal["pending", "undoing", "confirmed"] = Field(
        description="confirmed; pending while it is placed; undoing while a failed one is given back")
    items: list[OrderedItem]
    total_cents: int = Field(ge=1, le=MAX_AMOUNT_CENTS)
    payment_id: str | None
    created_at: float


class OrderList(BaseModel):
    orders: list[Order]
    total: int


def _errors(**described: str) -> dict:
    """responses= for FastAPI: each status an endpoint can answer, with the error body."""
    return {int(status[1:]): {"model": ErrorBody, "description": text} for status, text in described.items()}


UNAVAILABLE = "a module is unavailable or failing (an injected fault, a peer that does not answer)"
INVALID = "invalid parameters or body (the message and `problems` say which)"


# -- routers, one per module -------------------------------------------------------------
def catalog_router(catalog: Catalog) -> APIRouter:
    router = APIRouter(prefix="/api/products", tags=["catalog"])

    @router.get("", operation_id="list_products", response_model=ProductList, response_model_exclude_unset=True,
                responses=_errors(s422=INVALID, s503=UNAVAILABLE))
    def list_products(limit: int = Query(20, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict:
        return catalog.list_products(limit, offset)

    @router.get("/{product_id}", operation_id="get_product", response_model=Product,
                response_model_exclude_unset=True,
                responses=_errors(s404="no product with this id", s503=UNAVAILABLE))
    def get_product(product_id: str) -> dict:
        return catalog.get_product(product_id)

    return router


def inventory_router(inventory: Inventory) -> APIRouter:
    """Public: stock levels, read-only."""
    router = APIRouter(prefix="/api/inventory", tags=["inventory"])

    @router.get("/{product_id}", operation_id="get_stock", response_model=Stock,
                responses=_errors(s404="no product with this id", s503=UNAVAILABLE))
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


IDEMPOTENCY_KEY_HEADER = Header(
    default=None, min_length=1, max_length=128, pattern=f"^{IDEMPOTENCY_KEY.pattern}$",
    description="Makes a retry safe: the same key with the same order answers the first order"
                " again (200, Idempotent-Replayed: true) instead of placing another. 1 to 128 visible"
                " ASCII characters, e.g. a UUID; anything else is refused with 400.")

PLACE_ORDER_RESPONSES = {
    201: {"description": "the order is placed, paid and confirmed",
          "links": {"GetOrder": {"operationId": "get_order", "parameters": {"order_id": "$response.body#/order_id"},
                                 "description": "the order just placed"}}},
    200: {"model": Order, "description": "a retry with the same Idempotency-Key: the first order, not a new one",
          "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}},
          "links": {"GetOrder": {"operationId": "get_order", "parameters": {"order_id": "$response.body#/order_id"}}}},
    **_errors(
        s400="malformed JSON, or an Idempotency-Key that is not 1 to 128 visible ASCII characters",
        s402="the card was declined; nothing is charged and no stock is held",
        s409="not enough stock, or an order with this Idempotency-Key is still being placed or undone",
        s415="the body is not sent as application/json",
        s422=INVALID + "; an unknown product; an Idempotency-Key used for a different order",
        s503=UNAVAILABLE + "; or the order took too long and was undone (nothing charged): place it again"),
}


def orders_router(orders: Orders, metrics: Metrics) -> APIRouter:
    router = APIRouter(prefix="/api/orders", tags=["orders"])

    @router.post("", status_code=201, operation_id="place_order", response_model=Order,
                 responses=PLACE_ORDER_RESPONSES)
    def place_order(body: OrderRequest, response: Response,
                    idempotency_key: str | None = IDEMPOTENCY_KEY_HEADER) -> dict:
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

    @router.get("", operation_id="list_orders", response_model=OrderList,
                responses=_errors(s422=INVALID, s503=UNAVAILABLE))
    def list_orders(limit: int = Query(20, ge=1, le=500)) -> dict:
        return orders.list(limit)

    @router.get("/{order_id}", operation_id="get_order", response_model=Order,
                responses=_errors(s404="no order with this id", s503=UNAVAILABLE))
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
def _recovery_age_s(settings: Settings) -> float:
    """The configured recovery age, raised to the longest an order can take: a shorter one
    would undo orders still on their way (they would fail, though nothing is lost)."""
    age = settings.safe_recovery_age_s()
    if age > settings.recovery_age_s:
        log.warning(f"recovery_age_s={settings.recovery_age_s:g} is shorter than an order can take"
                    f" ({age:g} s: 2 peer calls x their timeouts and tries, + margin); using {age:g} s",
                    extra={"recovery_age_s": age})
    return age


def _start_recovery(orders: Orders, settings: Settings) -> None:
    """Undo orders left pending by a crash (at start: by an earlier run), then keep looking.
    Orders younger than the recovery age may belong to another copy of this service that is
    still placing them, so they are left alone."""
    age = _recovery_age_s(settings)
    undone = orders.recover_pending(older_than_s=age)
    if undone:
        log.warning("undid orders left pending by an earlier crash", extra={"count": undone})

    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(settings.recovery_interval_s):
            try:
                orders.recover_pending(older_than_s=age)
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
        _start_recovery(parts["orders"], settings)
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
