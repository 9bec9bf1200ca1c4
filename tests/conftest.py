"""Shared fixtures: real shop processes on free ports, under a private MSALAB_HOME."""

from __future__ import annotations

import os
import time

import pytest

from msalab import ports, shop

TEST_ENV = {"SHOP_PRODUCT_COUNT": "50", "SHOP_INITIAL_STOCK": "50", "SHOP_RECOVERY_AGE_S": "1"}


@pytest.fixture(scope="session", autouse=True)
def private_state(tmp_path_factory):
    """Tests never touch a learner's lab state, and leave nothing behind."""
    old = os.environ.get("MSALAB_HOME")
    os.environ["MSALAB_HOME"] = str(tmp_path_factory.mktemp("msalab-home"))
    yield
    from msalab import procs

    procs.stop_all()
    if old is None:
        os.environ.pop("MSALAB_HOME", None)
    else:
        os.environ["MSALAB_HOME"] = old


def start_monolith(name: str) -> shop.Monolith:
    return shop.Monolith(name, port=ports.free_port(), env=TEST_ENV).start()


def start_microservices(name: str) -> shop.Microservices:
    port_of = {s: ports.free_port() for s in shop.Microservices.SERVICES}
    return shop.Microservices(name, port_of=port_of, env=TEST_ENV).start()


@pytest.fixture(scope="module")
def monolith():
    deployment = start_monolith("test-monolith")
    yield deployment
    deployment.cleanup()


@pytest.fixture(scope="module")
def microservices():
    deployment = start_microservices("test-microservices")
    yield deployment
    deployment.cleanup()


@pytest.fixture(params=["monolith", "microservices"])
def deployment(request):
    """Each API test runs against both shapes of the shop."""
    deployment = request.getfixturevalue(request.param)
    deployment.client.reset_faults()
    if isinstance(deployment, shop.Microservices):
        for name in ("catalog", "inventory", "payments", "orders"):
            deployment.service_client(name).reset_faults()
    return deployment


def fault_client(deployment, module: str) -> shop.ShopClient:
    """Where a module's fault knobs live: the monolith itself, or the module's service."""
    if isinstance(deployment, shop.Monolith):
        return deployment.client
    return deployment.service_client(module)


def as_orders(deployment: shop.Microservices, service: str) -> shop.ShopClient:
    """`service` itself, called the way the orders service calls it: with a credential signed
    with the deployment's key (the internal endpoints refuse anyone else)."""
    import sys

    sys.path.insert(0, str(shop.paths.LAB_SERVICES))
    from shop.servicecred import credential

    return shop.ShopClient(deployment[service].url,
                           headers=credential(deployment.env["SHOP_SERVICE_KEY"], "orders", service))


# Figures a test measured (request counts, kills, ...): printed at the end of the run, so a
# passing CI log shows them too (pytest hides a passing test's own output).
MEASURED: list[str] = []


def report(line: str) -> None:
    print(line)
    MEASURED.append(line.strip())


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASURED:
        terminalreporter.section("measured in this run")
        for line in MEASURED:
            terminalreporter.write_line(line)


def wait_until(condition, timeout_s: float = 15, every_s: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return bool(condition())

