"""Part II with a real etcd: live config reaches running services; instances register with a
lease, and a killed one leaves the registry and the gateway's rotation without a failed request."""

from __future__ import annotations

import os
import sys
import time

import pytest

from conftest import TEST_ENV
from msalab import components, images, load, ports, shop

sys.path.insert(0, str(shop.paths.LAB_SERVICES))
from shop.etcd import Etcd  # noqa: E402

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def etcd():
    if not images.docker_available():
        if os.environ.get("MSALAB_REQUIRE_DOCKER"):
            pytest.fail("no Docker engine is running (fix: make setup)")
        pytest.skip("no Docker engine is running (fix: make setup)")
    store = components.start("etcd")  # a fresh container: an empty store
    yield Etcd(store.url)
    components.stop("etcd")


@pytest.fixture(scope="module")
def dynamic_shop(etcd):
    port_of = {s: ports.free_port() for s in shop.Microservices.SERVICES}
    env = {**TEST_ENV, "SHOP_CONFIG_STORE": etcd.url, "SHOP_REGISTRY": etcd.url}
    deployment = shop.Microservices("test-dynamic", port_of=port_of, env=env).start()
    yield deployment
    deployment.cleanup()


def until(check, timeout_s: float) -> float:
    """Seconds until check() held; fails the test after timeout_s."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"not true within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_every_service_registers_itself(dynamic_shop, etcd):
    registered = {key.split("/")[3] for key in etcd.get_prefix("/shop/services/")[0]}
    assert registered == {"catalog", "inventory", "payments", "orders"}


def test_a_sale_reaches_the_running_catalog_and_orders_charge_it(dynamic_shop, etcd):
    client = dynamic_shop.client
    price = undiscounted_price(dynamic_shop)
    etcd.put("/shop/config/catalog/sale_percent", "25")
    try:
        assert until(lambda: client.product("p-0001").body["price_cents"] == round(price * 0.75), 2) < 2
        order = client.order({"p-0001": 2})
        assert order.status == 201, order
        assert order.body["total_cents"] == 2 * round(price * 0.75)
        etcd.delete("/shop/config/catalog/sale_percent")  # no key: back to the default
        until(lambda: client.product("p-0001").body["price_cents"] == price, 2)
    finally:
        etcd.delete("/shop/config/catalog/sale_percent")


def undiscounted_price(dynamic_shop) -> int:
    """p-0001's price once the catalog runs with no sale: a test's base price must not be read
    while the previous test's delete of the sale is still on its way (the watch is asynchronous)."""
    catalog = dynamic_shop.service_client("catalog")
    until(lambda: "sale_percent" not in catalog.request("GET", "/admin/config").body["values"], 2)
    return dynamic_shop.client.product("p-0001").body["price_cents"]


def applied(service_client, revision: int) -> dict:
    """The service's live config once it has applied `revision` (or a later one)."""
    until(lambda: service_client.request("GET", "/admin/config").body["revision"] >= revision, 2)
    return service_client.request("GET", "/admin/config").body


def warnings_about(proc, key: str) -> list[dict]:
    return [e for e in proc.log_entries() if e["level"] == "warning" and e.get("key") == key]


@pytest.mark.parametrize("bad, reason", [("150", "not between 0 and 90"), ("not a number", "not a number")])
def test_a_refused_value_keeps_the_last_good_one_and_says_why_in_the_log(dynamic_shop, etcd, bad, reason):
    client, catalog = dynamic_shop.client, dynamic_shop.service_client("catalog")
    price = undiscounted_price(dynamic_shop)
    etcd.put("/shop/config/catalog/sale_percent", "25")
    try:
        until(lambda: client.product("p-0001").body["price_cents"] == round(price * 0.75), 2)
        config = applied(catalog, etcd.put("/shop/config/catalog/sale_percent", bad))
        assert config["values"]["sale_percent"] == "25"
        assert config["rejected"] == {"sale_percent": bad}
        assert client.product("p-0001").body["price_cents"] == round(price * 0.75)
        [warning] = [w for w in warnings_about(dynamic_shop["catalog"], "sale_percent") if w["value"] == bad]
        assert warning["reason"] == reason and warning["kept"] == "25"
        assert "sale_percent" in warning["msg"] and repr(bad) in warning["msg"] and reason in warning["msg"]
        etcd.put("/shop/config/catalog/sale_percent", "10")  # a good value is taken again
        until(lambda: client.product("p-0001").body["price_cents"] == round(price * 0.9), 2)
        assert applied(catalog, 0)["rejected"] == {}
    finally:
        etcd.delete("/shop/config/catalog/sale_percent")


def test_a_refused_log_level_leaves_every_service_on_the_last_good_one(dynamic_shop, etcd):
    good = etcd.put("/shop/config/all/log_level", "INFO")
    try:
        for name in dynamic_shop.SERVICES:  # each has a last good value before the bad one comes
            applied(dynamic_shop.service_client(name), good)
        revision = etcd.put("/shop/config/all/log_level", "LOUD")
        for name in dynamic_shop.SERVICES:
            config = applied(dynamic_shop.service_client(name), revision)
            assert config["values"]["log_level"] == "INFO", name
            assert [w["value"] for w in warnings_about(dynamic_shop[name], "log_level")] == ["LOUD"], name
    finally:
        etcd.delete("/shop/config/all/log_level")


def test_killed_instance_leaves_the_rotation_without_failed_requests(dynamic_shop, etcd):
    client, gateway = dynamic_shop.client, dynamic_shop.service_client("gateway")
    copy = dynamic_shop.start_copy("catalog", "catalog-2", ports.free_port(), version="second")
    until(lambda: copy.url in gateway.request("GET", "/admin/routes").body["catalog"], 5)
    with load.Stream(lambda: client.product("p-0001"), rate_per_s=40) as stream:
        time.sleep(1)
        copy.kill()  # SIGKILL: no goodbye; only the lease's TTL (3 s) removes it
        gone_after = until(lambda: copy.url not in gateway.request("GET", "/admin/routes").body["catalog"], 6)
        time.sleep(1)
    result = stream.stop()
    # TTL 3 s after the last renewal (renewed every 1 s), give or take etcd's 0.5 s expiry sweep
    assert 1.5 < gone_after < 5
    assert result.failed == []
    assert {s.upstream for s in result.samples} == {"catalog/blue", "catalog/second"}
