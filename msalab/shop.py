"""The shop from a notebook: start it as a monolith or as microservices, and talk to it.

    mono = shop.Monolith().start()
    reply = mono.client.order({"p-0001": 2})
    mono.cleanup()
"""

from __future__ import annotations

import secrets
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import httpx

from . import paths, ports, promtext
from .errors import LabError
from .procs import ServiceProcess, stop_all

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


@dataclass
class Reply:
    """One HTTP answer, or status 0 and `error` when no answer came at all."""

    status: int
    body: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    ms: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def __repr__(self) -> str:
        what = self.error or self.body.get("error") or ", ".join(f"{k}={v}" for k, v in list(self.body.items())[:3])
        return f"<{self.status or 'no answer'} in {self.ms:.1f} ms: {what}>"


class ShopClient:
    """The shop's public API. The monolith and the gateway answer it the same way."""

    def __init__(self, url: str, timeout_s: float = 5.0, **http_options) -> None:
        """`http_options` go to httpx (TLS files, for the API server's service proxy)."""
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=timeout_s, **http_options)

    def request(self, method: str, path: str, **kwargs) -> Reply:
        started = time.perf_counter()
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            return Reply(0, ms=(time.perf_counter() - started) * 1000, error=f"{err.__class__.__name__}: {err}")
        try:
            body = answer.json() if answer.content else {}
        except ValueError:
            body = {"text": answer.text[:200]}
        return Reply(answer.status_code, body if isinstance(body, dict) else {"items": body},
                     dict(answer.headers), (time.perf_counter() - started) * 1000)

    # -- the shop ---------------------------------------------------------------------
    def products(self, limit: int = 5) -> Reply:
        return self.request("GET", "/api/products", params={"limit": limit})

    def product(self, product_id: str) -> Reply:
        return self.request("GET", f"/api/products/{product_id}")

    def order(self, items: dict[str, int], card: str = GOOD_CARD, key: str | None = None) -> Reply:
        """Place an order. `key` is the Idempotency-Key; a new one is made when not given."""
        body = {"items": [{"product_id": p, "quantity": q} for p, q in items.items()], "card": card}
        return self.request("POST", "/api/orders", json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex})

    def get_order(self, order_id: str) -> Reply:
        return self.request("GET", f"/api/orders/{order_id}")

    def orders(self, limit: int = 20) -> Reply:
        return self.request("GET", "/api/orders", params={"limit": limit})

    def stock(self, product_id: str) -> Reply:
        return self.request("GET", f"/api/inventory/{product_id}")

    # -- operations ---------------------------------------------------------------------
    def ready(self) -> bool:
        return self.request("GET", "/health/ready").status == 200

    def faults(self, module: str, **knobs) -> Reply:
        return self.request("PUT", f"/admin/faults/{module}", json=knobs)

    def reset_faults(self) -> Reply:
        return self.request("DELETE", "/admin/faults")

    def crash(self, module: str) -> Reply:
        return self.request("POST", f"/admin/crash/{module}")

    def metrics(self) -> str:
        return self._http.get("/metrics").text


class Deployment:
    """A set of service processes that share a data folder and are removed together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data = paths.data_dir(name)
        self.procs: dict[str, ServiceProcess] = {}
        self._clients: dict[str, ShopClient] = {}

    def _client_for(self, url: str) -> ShopClient:
        """One client (one connection pool) per address: a new connection per request
        would add its own cost to every measurement."""
        if url not in self._clients:
            self._clients[url] = ShopClient(url)
        return self._clients[url]

    def __getitem__(self, name: str) -> ServiceProcess:
        if name not in self.procs:
            raise LabError(f"no process {name!r} in {self.name}; running: {', '.join(self.procs)}",
                           "use one of the names above")
        return self.procs[name]

    def _start(self, procs: list[ServiceProcess]) -> None:
        for proc in procs:
            self.procs[proc.name] = proc.start()
        with ThreadPoolExecutor(len(procs) or 1) as pool:
            list(pool.map(lambda p: p.wait_ready(), procs))

    def _wipe(self) -> None:
        if self.data.exists():
            shutil.rmtree(self.data)

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.procs) or 1) as pool:
            list(pool.map(lambda p: p.stop(), self.procs.values()))

    def cleanup(self) -> None:
        """Stop every process and delete the data: nothing is left running or on disk."""
        self.stop()
        self.procs.clear()
        stop_all(self.name)  # also what an earlier run (another kernel) left behind
        self._wipe()

    def database_files(self) -> list:
        """Every SQLite database this deployment has written (one per owner of data)."""
        return sorted(self.data.rglob("*.sqlite3"))

    def memory_mb(self) -> dict[str, float]:
        return {name: proc.memory_mb() for name, proc in self.procs.items() if proc.alive()}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


class Monolith(Deployment):
    """The whole shop in one process and one database; copies share the database."""

    def __init__(self, name: str = "monolith", port: int = ports.MONOLITH, env: dict | None = None) -> None:
        super().__init__(name)
        self.port, self.env = port, env or {}

    def _copy(self, i: int) -> ServiceProcess:
        return ServiceProcess(f"monolith-{i + 1}" if i else "monolith", "monolith", self.port + i,
                              self.data, env=self.env, deployment=self.name)

    def start(self, copies: int = 1, fresh: bool = True) -> "Monolith":
        if fresh:
            self.cleanup()
        self._start([self._copy(i) for i in range(copies)])
        return self

    def scale(self, copies: int) -> "Monolith":
        current = len(self.procs)
        self._start([self._copy(i) for i in range(current, copies)])
        for i in range(copies, current):
            self.procs.pop(self._copy(i).name).stop()
        return self

    def restart(self) -> "Monolith":
        """Start again whatever has died (after a crash), keeping the data."""
        dead = [p for p in self.procs.values() if not p.alive()]
        for proc in dead:
            proc.reap()
        self._start(dead)
        return self

    @property
    def client(self) -> ShopClient:
        return self._client_for(self._copy(0).url)


class Microservices(Deployment):
    """Gateway, catalog, inventory, payments and orders: one process and one database each.

    The services sign their calls to each other with a key made for this deployment
    (SHOP_SERVICE_KEY, shop/servicecred.py): the internal endpoints answer only the orders service.
    """

    SERVICES = ("catalog", "inventory", "payments", "orders", "gateway")

    def __init__(self, name: str = "microservices", port_of: dict[str, int] | None = None,
                 env: dict | None = None) -> None:
        super().__init__(name)
        self.port_of = port_of or {"gateway": ports.GATEWAY, "catalog": ports.CATALOG, "orders": ports.ORDERS,
                                   "payments": ports.PAYMENTS, "inventory": ports.INVENTORY}
        urls = {f"SHOP_{s.upper()}_URL": f"http://127.0.0.1:{self.port_of[s]}" for s in self.SERVICES}
        # A new random key per deployment (copies started later get the same one); never a fixed one.
        self.env = {**urls, "SHOP_SERVICE_KEY": secrets.token_urlsafe(32), **(env or {})}

    def _service(self, service: str, name: str | None = None, port: int | None = None,
                 version: str = "blue") -> ServiceProcess:
        # Copies of one service share its data folder, as replicas share their database.
        return ServiceProcess(name or service, service, port or self.port_of[service],
                              self.data / service, version=version, env=self.env, deployment=self.name)

    def start(self, fresh: bool = True) -> "Microservices":
        if fresh:
            self.cleanup()
        self._start([self._service(s) for s in self.SERVICES])
        if self.env.get("SHOP_REGISTRY"):
            self._wait_discovered()
        return self

    def _wait_discovered(self, timeout_s: float = 10) -> None:
        """With a registry, a caller knows a service only once its watch has seen it register;
        until then it answers 503 "no instance registered". Ready is not enough: wait for that."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [f"{caller} -> {callee}" for callee, callers in self.CALLERS.items() for caller in callers
                       if not self.service_client(caller).request("GET", "/admin/routes").body.get(callee)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise LabError(f"not found in the registry after {timeout_s:.0f} s: {', '.join(missing)}",
                               "python -m msalab components status (is etcd running?)")
            time.sleep(0.05)

    def start_copy(self, service: str, name: str, port: int, version: str = "blue") -> ServiceProcess:
        """Start one more copy of a service (not yet receiving traffic from the gateway)."""
        proc = self._service(service, name, port, version)
        self._start([proc])
        return proc

    # Who calls whom: a switch must reach every caller, not only the front door. (The gateway
    # does not call payments: charges and refunds are internal, only orders makes them.)
    CALLERS = {"catalog": ("gateway", "orders"), "inventory": ("gateway", "orders"),
               "payments": ("orders",), "orders": ("gateway",)}

    def route(self, service: str, *procs: ServiceProcess) -> list[Reply]:
        """Make every caller of `service` send its requests to these copies (round-robin)."""
        replies = []
        for caller in self.CALLERS[service]:
            reply = self.service_client(caller).request("PUT", f"/admin/routes/{service}",
                                                        json={"urls": [p.url for p in procs]})
            if not reply.ok:
                raise LabError(f"{caller} refused the route change: {reply.body.get('error')}",
                               "check that the new copies are running and ready")
            replies.append(reply)
        return replies

    def served_by(self, service: str, call: Callable[[], object]) -> dict[str, int]:
        """How many requests each running copy of `service` answered while call() ran, whoever
        sent them (the gateway, orders): read from each copy's own /metrics before and after.
        This is how a lab sees where orders' calls went, which no answer to the client shows.
        Valid while nothing else sends requests to those copies."""
        copies = [p.name for p in self.procs.values() if p.service == service and p.alive()]
        before = {name: self._requests_answered(name) for name in copies}
        call()
        return {name: self._requests_answered(name) - before[name] for name in copies}

    def _requests_answered(self, name: str) -> int:
        # Health probes (a route switch probes readiness) and metrics reads are not traffic.
        samples = promtext.samples(self.service_client(name).metrics(), "http_requests_total")
        return int(sum(value for labels, value in samples if not labels["route"].startswith(("/health", "/metrics"))))

    def scale(self, service: str, copies: int, first_port: int = ports.CATALOG_COPIES) -> list[ServiceProcess]:
        """Run `copies` copies of one service behind the gateway; the others stay as they are."""
        wanted = [self.procs[service]] + [
            self.procs.get(f"{service}-{i}") or self._service(service, f"{service}-{i}", first_port + i - 2)
            for i in range(2, copies + 1)
        ]
        self._start([p for p in wanted if not p.alive()])
        self.route(service, *wanted)
        for name in [n for n in self.procs if n.startswith(f"{service}-") and self.procs[n] not in wanted]:
            self.procs.pop(name).stop()
        return wanted

    def restart(self, name: str) -> ServiceProcess:
        proc = self[name]
        proc.reap()
        self._start([proc])
        return proc

    @property
    def client(self) -> ShopClient:
        return self._client_for(f"http://127.0.0.1:{self.port_of['gateway']}")

    def service_client(self, name: str) -> ShopClient:
        return self._client_for(self[name].url)
