"""What every app of the shop has besides its business API: JSON errors, health and fault
knobs, the resilience state, metrics. The services' apps (api.py) and the gateway
(gateway.py) both import it, so neither has to import the other for them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .errors import ShopError
from .faults import FaultBoard, crash_soon
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



def add_metrics_route(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
