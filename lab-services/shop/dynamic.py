"""What the shop takes from a config store and a service registry (both etcd), when told to
(SHOP_CONFIG_STORE, SHOP_REGISTRY); without them it runs on its static settings.

Config store, under /shop/config/: `all/KEY` for every service, `SERVICE/KEY` for one (it
wins). Keys read live: sale_percent (catalog prices), log_level (every service).
Registry, under /shop/services/SERVICE/INSTANCE = URL, with a lease: every service registers
itself; callers (gateway, orders) watch it and balance over the instances it lists.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from fastapi import APIRouter, FastAPI

from .config import Settings
from .etcd import Etcd, Registration
from .routing import Upstreams

log = logging.getLogger("shop.dynamic")

CONFIG_PREFIX = "/shop/config/"
SERVICES_PREFIX = "/shop/services/"


class LiveConfig:
    """Values that may change while the service runs; read them at the moment of use."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.source = "static settings"
        self.values: dict[str, str] = {}
        self.revision = 0
        self.applied_at = time.time()
        self._lock = threading.Lock()

    def get(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            return self.values.get(key, default)

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A numeric value; one that is missing, malformed or out of range counts as the default."""
        try:
            value = float(self.get(key, default))
        except (TypeError, ValueError):
            return default
        return value if low <= value <= high else default

    def apply(self, stored: dict[str, str], revision: int) -> None:
        mine = {k.removeprefix(CONFIG_PREFIX + "all/"): v for k, v in stored.items() if k.startswith(CONFIG_PREFIX + "all/")}
        mine |= {k.removeprefix(f"{CONFIG_PREFIX}{self.service}/"): v for k, v in stored.items()
                 if k.startswith(f"{CONFIG_PREFIX}{self.service}/")}
        with self._lock:
            changed = mine != self.values
            self.values, self.revision, self.applied_at = mine, revision, time.time()
        level = mine.get("log_level", "").upper()
        if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
            logging.getLogger().setLevel(level)
        if changed:
            log.info("live config applied", extra={"revision": revision, "values": mine})

    def snapshot(self) -> dict:
        with self._lock:
            return {"source": self.source, "revision": self.revision, "values": dict(self.values),
                    "applied_at": self.applied_at}


def _upstreams_from_registry(upstreams: Upstreams, stored: dict[str, str]) -> None:
    instances: dict[str, list[str]] = {}
    for key, url in sorted(stored.items()):
        service = key.removeprefix(SERVICES_PREFIX).split("/")[0]
        instances.setdefault(service, []).append(url)
    for service in upstreams.snapshot():
        upstreams.replace(service, instances.get(service, []))


class _StopWatching:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def close(self) -> None:
        self.stop.set()


def connect(app: FastAPI, settings: Settings, live: LiveConfig, upstreams: Upstreams | None) -> list:
    """Start watching the config store and the registry, and register this instance; a clean
    stop deregisters at once (a killed process waits for its lease's TTL)."""
    stop, closers = threading.Event(), []
    if settings.config_store:
        live.source = f"etcd {settings.config_store}"
        Etcd(settings.config_store).watch_prefix(CONFIG_PREFIX, live.apply, stop)
    if settings.registry:
        registry = Etcd(settings.registry)
        if settings.service != "gateway":
            url = f"http://{settings.host}:{settings.port}"
            closers.append(Registration(registry, f"{SERVICES_PREFIX}{settings.service}/{settings.instance}", url,
                                        settings.registry_ttl_s))
        if upstreams is not None:
            registry.watch_prefix(SERVICES_PREFIX, lambda stored, _: _upstreams_from_registry(upstreams, stored), stop)
    closers.append(_StopWatching(stop))
    _close_on_shutdown(app, closers)
    return closers


def _close_on_shutdown(app: FastAPI, closers: list) -> None:
    # Not atexit: uvicorn ends a SIGTERM'd process by re-raising the signal, which skips it.
    # The app's lifespan does end, after in-flight requests are answered.
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application):
        async with inner(application) as state:
            yield state
        for closer in closers:
            closer.close()

    app.router.lifespan_context = lifespan


def config_router(live: LiveConfig) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/admin/config")
    def live_config() -> dict:
        return live.snapshot()

    return router
