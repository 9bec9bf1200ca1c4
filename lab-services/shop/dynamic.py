"""What the shop takes from a config store and a service registry (both etcd), when told to
(SHOP_CONFIG_STORE, SHOP_REGISTRY); without them it runs on its static settings.

Config store, under /shop/config/: `all/KEY` for every service, `SERVICE/KEY` for one (it
wins). Keys read live: sale_percent (catalog prices), log_level (every service); a value
that fails its check (CHECKS) is logged and refused, and the last good value stays.
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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _number_between(low: float, high: float):
    def why_not(text: str) -> str | None:
        try:
            value = float(text)
        except ValueError:
            return "not a number"
        return None if low <= value <= high else f"not between {low:g} and {high:g}"  # NaN fails both
    return why_not


def _log_level(text: str) -> str | None:
    return None if text.upper() in LOG_LEVELS else f"not one of {', '.join(LOG_LEVELS)}"


# Why a value of a key read live is refused (None: it is accepted). Other keys are kept as written.
CHECKS = {"sale_percent": _number_between(0, 90), "log_level": _log_level}


class LiveConfig:
    """Values that may change while the service runs; read them at the moment of use.

    Every value is checked before it replaces the old one: a refused value leaves the last
    good one in place (or the reader's default, if there was none) and is logged as a warning.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self.source = "static settings"
        self.values: dict[str, str] = {}
        self.rejected: dict[str, str] = {}  # key: the refused value in the store now
        self.revision = 0
        self.applied_at = time.time()
        self._lock = threading.Lock()

    def get(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            return self.values.get(key, default)

    def number(self, key: str, default: float) -> float:
        """A numeric value (already checked when it was applied), or the default if none is set."""
        value = self.get(key)
        return default if value is None else float(value)

    def apply(self, stored: dict[str, str], revision: int) -> None:
        mine = {k.removeprefix(CONFIG_PREFIX + "all/"): v for k, v in stored.items() if k.startswith(CONFIG_PREFIX + "all/")}
        mine |= {k.removeprefix(f"{CONFIG_PREFIX}{self.service}/"): v for k, v in stored.items()
                 if k.startswith(f"{CONFIG_PREFIX}{self.service}/")}
        accepted, rejected = self._checked(mine, revision)
        with self._lock:
            changed = accepted != self.values
            self.values, self.rejected, self.revision, self.applied_at = accepted, rejected, revision, time.time()
        if "log_level" in accepted:
            logging.getLogger().setLevel(accepted["log_level"].upper())
        if changed:
            log.info("live config applied", extra={"revision": revision, "values": accepted})

    def _checked(self, wanted: dict[str, str], revision: int) -> tuple[dict[str, str], dict[str, str]]:
        """(values to run with, refused values). Only the watch thread calls apply, so reading
        self.values here without the lock sees the values it last set."""
        accepted, rejected = {}, {}
        for key, value in wanted.items():
            reason = CHECKS[key](value) if key in CHECKS else None
            if reason is None:
                accepted[key] = value
                continue
            rejected[key] = value
            if key in self.values:
                accepted[key] = self.values[key]
            if self.rejected.get(key) != value:  # once per bad value, not at every later change
                kept = repr(self.values[key]) if key in self.values else "the default"
                log.warning(f"live config {key}={value!r} rejected ({reason}); keeping {kept}",
                            extra={"revision": revision, "key": key, "value": value, "reason": reason,
                                   "kept": self.values.get(key)})
        return accepted, rejected

    def snapshot(self) -> dict:
        with self._lock:
            return {"source": self.source, "revision": self.revision, "values": dict(self.values),
                    "rejected": dict(self.rejected), "applied_at": self.applied_at}


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
