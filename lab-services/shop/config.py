"""Configuration: defaults, then an optional YAML file, then SHOP_* environment variables.

Twelve-factor style: the same code and image run anywhere; only configuration changes.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

SERVICES = ("monolith", "gateway", "catalog", "inventory", "payments", "orders")
MODULES = ("catalog", "inventory", "payments", "orders")
PEER_CALLS_AFTER_PENDING = 2  # an order reserves, then charges, after it is written as pending
RETRY_BACKOFF_MAX_S = 0.5     # resilience.Guard waits at most this long between two tries
RECOVERY_MARGIN_S = 1.0       # the order's own database writes, a busy machine


@dataclass
class Settings:
    service: str = "monolith"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: str = "./data"
    version: str = "blue"  # shown in X-Served-By, used by the blue-green lab
    instance: str = ""  # shown in X-Instance; empty means hostname:port (a pod name on Kubernetes)
    product_count: int = 200  # products seeded into an empty catalog
    initial_stock: int = 1000  # units of each product seeded into an empty inventory
    upstream_timeout_s: float = 5.0
    # Protection around calls to peers (shop/resilience.py); off by default, so the
    # resilience lab can show the cascade first. Timeouts shrink down the call chain:
    # the gateway waits longer than orders waits for payments.
    resilience: bool = False
    call_timeout_s: float = 1.0      # a service's calls to its peers
    gateway_timeout_s: float = 3.0   # the gateway's calls to the services
    bulkhead_size: int = 10          # calls in flight to one peer; more are refused at once
    retries: int = 2                 # extra tries after a quick 5xx, with backoff and jitter
    breaker_failures: int = 5        # failures in a row that open the circuit
    breaker_reset_s: float = 5.0     # how long it stays open before calls may try again
    catalog_url: str = "http://127.0.0.1:8101"
    orders_url: str = "http://127.0.0.1:8102"
    payments_url: str = "http://127.0.0.1:8103"
    inventory_url: str = "http://127.0.0.1:8104"
    # Part II: an etcd URL for live config and one for the service registry (empty: not used)
    config_store: str = ""
    registry: str = ""
    registry_ttl_s: int = 3          # an instance that stops renewing is gone after this long
    otel_exporter: str = "none"  # none | console | otlp
    otel_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    log_level: str = "INFO"
    recovery_age_s: float = 30.0  # pending orders older than this are undone (at least longest_order_s)
    recovery_interval_s: float = 1.0  # how often the recovery loop looks for them
    # Hardening (shop/limits.py, shop/servicecred.py, the gateway). Always on.
    max_uri_bytes: int = 2048        # longest request target (path and query): 414 beyond
    max_body_bytes: int = 65536      # largest request body: 413 beyond
    gateway_max_in_flight: int = 32  # calls in flight from the gateway to one service (of its 40 threads): 503 beyond
    gateway_timeouts: str = ""       # per service, e.g. "orders=8,catalog=2"; others wait the default
    max_hang_s: float = 120.0        # the hang fault knob switches itself off after this long
    service_key: str = ""            # signs calls between services; empty: internal endpoints refuse all

    def guard(self, peer: str, retries: int | None = None):
        """The protection for calls to `peer`, or None when resilience is off."""
        if not self.resilience:
            return None
        from .resilience import Guard

        retries = self.retries if retries is None else retries
        return Guard(peer, self.bulkhead_size, retries, self.breaker_failures, self.breaker_reset_s)

    def longest_order_s(self) -> float:
        """The longest an order can wait on its peers after its pending row is written: the
        reserve and the charge, each on every try up to its timeout, plus the backoff between
        tries and a margin. Recovery must wait at least this long before it undoes an order,
        or it undoes orders that are still on their way (the order then fails with a 503).
        A timed-out call is never retried (routing, resilience), so one try per call takes a
        timeout; the monolith calls its modules in-process, without timeouts."""
        if self.service == "monolith":
            per_call = 0.0
        elif self.resilience:
            per_call = (self.retries + 1) * self.call_timeout_s + self.retries * RETRY_BACKOFF_MAX_S
        else:
            per_call = self.upstream_timeout_s
        return PEER_CALLS_AFTER_PENDING * per_call + RECOVERY_MARGIN_S

    def safe_recovery_age_s(self) -> float:
        """recovery_age_s, raised to longest_order_s when it is shorter."""
        return max(self.recovery_age_s, self.longest_order_s())

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / f"{self.service}.sqlite3"


def _coerce(value: str, like: object) -> object:
    if isinstance(like, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    return value


def load_settings(overrides: dict | None = None, environ: dict | None = None) -> Settings:
    """Build settings from defaults < SHOP_CONFIG_FILE (YAML) < SHOP_* env < overrides."""
    environ = os.environ if environ is None else environ
    settings = Settings()
    known = {f.name for f in dataclasses.fields(Settings)}
    values: dict = {}
    config_file = environ.get("SHOP_CONFIG_FILE")
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise SystemExit(f"SHOP_CONFIG_FILE={config_file} does not exist; fix the path or unset it")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"{config_file} must hold a YAML mapping of setting: value")
        unknown = set(loaded) - known
        if unknown:
            raise SystemExit(f"{config_file}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
        values.update(loaded)
    for name in known:
        env_value = environ.get(f"SHOP_{name.upper()}")
        if env_value is not None:
            values[name] = _coerce(env_value, getattr(settings, name))
    values.update(overrides or {})
    settings = dataclasses.replace(settings, **values)
    if not settings.instance:
        settings.instance = f"{socket.gethostname()}:{settings.port}"
    if settings.service not in SERVICES:
        raise SystemExit(f"unknown service {settings.service!r}; choose one of {', '.join(SERVICES)}")
    return settings
