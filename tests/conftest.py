"""Shared fixtures: real shop processes on free ports, under a private MSALAB_HOME."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
import urllib.request

import pytest

from msalab import paths, ports, shop

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



JUPYTER_TOKEN = "course-tests"


def make_up_command() -> list[str]:
    """The JupyterLab command line `make up` runs (its last command), read from the Makefile."""
    dry_run = subprocess.run(["make", "-s", "-n", "up"], cwd=paths.REPO, capture_output=True,
                             text=True, check=True).stdout
    return shlex.split(dry_run.strip().splitlines()[-1])


@contextlib.contextmanager
def jupyterlab_as_make_up(home, notebook_dir, env=None):
    """JupyterLab started as `make up` starts it, on a free port with a known token, its
    settings, workspaces and runtime files under `home`, serving `notebook_dir` (a copy, so
    that its checkpoints are not left in labs/). Yields its address."""
    port = ports.free_port()
    jupyter_env = {f"JUPYTER_{name.upper()}_DIR": str(home / name) for name in ("config", "data", "runtime")}
    command = [f"--notebook-dir={notebook_dir}" if arg.startswith("--notebook-dir=") else arg
               for arg in make_up_command()]
    command += [f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={JUPYTER_TOKEN}"]
    log = open(home / "jupyterlab.log", "w")
    server = subprocess.Popen(command, cwd=paths.REPO, env={**os.environ, **jupyter_env, **(env or {})},
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            request = urllib.request.Request(url + "/api/status", headers={"Authorization": f"token {JUPYTER_TOKEN}"})
            return urllib.request.urlopen(request, timeout=1).status == 200
        except OSError:
            return server.poll() is not None  # exited: stop waiting, the assert below says so

    try:
        wait_until(answers, timeout_s=60, every_s=0.25)
        assert server.poll() is None, f"JupyterLab exited: {(home / 'jupyterlab.log').read_text()[-2000:]}"
        yield url
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
