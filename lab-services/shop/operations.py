"""What every app of the shop has besides its business API: JSON errors, health and fault
knobs, the resilience state, metrics. The services' apps (api.py) and the gateway
(gateway.py) both import it, so neither has to import the other for them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ShopError
from .faults import FaultBoard, crash_soon
from .orders import IDEMPOTENCY_KEY_RULE
from .observability import Metrics

log = logging.getLogger("shop")


# -- operations routes, the same on every service and on the monolith ------------------
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

    @router.get("/admin/faults", include_in_schema=False)
    def list_faults() -> dict:
        return {m: asdict(faults.get(m)) for m in faults.modules}

    @router.put("/admin/faults/{module}", include_in_schema=False)
    def set_faults(module: str, changes: dict) -> dict:
        return asdict(faults.update(module, changes))

    @router.delete("/admin/faults", include_in_schema=False)
    def reset_faults() -> dict:
        faults.reset()
        return {m: asdict(faults.get(m)) for m in faults.modules}

    @router.post("/admin/crash/{module}", status_code=202, include_in_schema=False)
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

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own errors (no such route, a body that is not UTF-8, ...) answer
        # {"detail": ...}; every answer of the shop has the same shape: {"error": ...}.
        message = {404: f"no route {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(err.status_code, str(err.detail))
        return JSONResponse({"error": message}, status_code=err.status_code, headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        if any(tuple(e.get("loc", ()))[:2] == ("header", "idempotency-key") for e in errors):
            return JSONResponse({"error": IDEMPOTENCY_KEY_RULE}, status_code=400)
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


def add_metrics_route(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


# -- the OpenAPI document: the public API, with the answers the edge itself may give -------
# Refused by shop/limits.py on every app, before any route runs.
EDGE_ERRORS = {400: "refused path (dot segment, encoded slash, control character) or malformed request",
               413: "request body larger than max_body_bytes", 414: "request target longer than max_uri_bytes"}
# And the gateway's own answers: unknown route, wrong method, a service full, down or too slow.
GATEWAY_ERRORS = {**EDGE_ERRORS, 404: "no such route, or no such resource", 405: "the path exists; the method does not",
                  503: "the service is unavailable or has too many calls in flight",
                  504: "the service did not answer in time"}
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"],
                "additionalProperties": True}


def document_errors(app: FastAPI, errors: dict[int, str], extra_routes: list | None = None) -> None:
    """Build the app's OpenAPI document once, from its routes (and `extra_routes`: the gateway
    adds the public routers it forwards to), with `errors` on every /api operation."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=[*(extra_routes or []), *app.routes])
            for path, operations in schema["paths"].items():
                for operation in operations.values() if path.startswith("/api") else ():
                    for status, why in errors.items():
                        operation["responses"].setdefault(str(status), {
                            "description": why,
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ShopError"}}}})
            schema.setdefault("components", {}).setdefault("schemas", {})["ShopError"] = ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
