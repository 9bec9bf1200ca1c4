"""The gateway: one entry point, routes switched at run time (blue-green), copies shared."""

from __future__ import annotations

import time

from msalab import load, ports


def test_unknown_route_is_404_with_the_known_routes(microservices):
    reply = microservices.client.request("GET", "/api/nothing")
    assert reply.status == 404 and "/api/products" in reply.body["error"]


def test_switch_to_a_copy_that_is_not_running_is_refused(microservices):
    reply = microservices.client.request("PUT", "/admin/routes/catalog", json={"urls": ["http://127.0.0.1:1"]})
    assert reply.status == 409 and "cannot be reached" in reply.body["error"]
    assert microservices.client.product("p-0001").status == 200


def test_switch_body_is_validated(microservices):
    reply = microservices.client.request("PUT", "/admin/routes/catalog", json={"urls": "nope"})
    assert reply.status == 422


def test_blue_green_switch_loses_no_request(microservices):
    client = microservices.client
    green = microservices.start_copy("catalog", "catalog-green", ports.free_port(), version="green")
    stream = load.Stream(lambda: client.product("p-0001"), rate_per_s=40).start()
    time.sleep(1.5)
    microservices.route("catalog", green)
    time.sleep(0.3)
    microservices["catalog"].stop()  # graceful: requests already sent to blue finish there
    time.sleep(1.5)
    result = stream.stop()
    served = result.count_by(lambda s: s.upstream)
    assert result.failed == [] and result.total > 80
    assert served.get("catalog/blue", 0) > 0 and served.get("catalog/green", 0) > 0
    # put things back for the other tests
    microservices.restart("catalog")
    microservices.route("catalog", microservices["catalog"])
    microservices.procs.pop("catalog-green").stop()


def test_a_rollback_to_blue_kept_running_moves_every_caller_back(microservices):
    """Lab I.4's rollback: gateway and orders both follow the switch, and back again, as the
    copies' own request counts show (an order's call to the catalog never reaches the client)."""
    client, blue = microservices.client, microservices["catalog"]
    green = microservices.start_copy("catalog", "catalog-green", ports.free_port(), version="green")
    try:
        microservices.route("catalog", green)
        assert microservices.served_by("catalog", lambda: client.order({"p-0002": 1})) == {"catalog": 0, "catalog-green": 1}
        microservices.route("catalog", blue)
        assert microservices.served_by("catalog", lambda: client.order({"p-0002": 1})) == {"catalog": 1, "catalog-green": 0}
        assert microservices.served_by("catalog", lambda: client.products(limit=3)) == {"catalog": 1, "catalog-green": 0}
    finally:
        microservices.route("catalog", blue)
        microservices.procs.pop("catalog-green").stop()


def test_copies_share_requests(microservices):
    copies = microservices.scale("catalog", 3, first_port=ports.free_port())
    result = [microservices.client.product("p-0001") for _ in range(30)]
    instances = {r.headers["x-upstream-instance"] for r in result if r.ok}
    assert len(instances) == 3 and all(r.ok for r in result)
    microservices.scale("catalog", 1)
    assert len(copies) == 3


def test_restarted_upstream_costs_no_request(microservices):
    """The gateway holds keep-alive connections to the catalog; a restart closes them. The
    first request after it meets a dead connection, and must be retried, not lost."""
    client = microservices.client
    assert client.product("p-0001").status == 200  # a pooled connection to the catalog now exists
    microservices["catalog"].stop()
    microservices.restart("catalog")
    replies = [client.product("p-0001") for _ in range(5)]
    assert [r.status for r in replies] == [200] * 5


def test_dead_copy_in_the_route_is_skipped_for_reads(microservices):
    """One of two catalog copies is gone: each read sent to it is retried on the other."""
    client = microservices.client
    spare = microservices.start_copy("catalog", "catalog-spare", ports.free_port(), version="spare")
    microservices.route("catalog", spare, microservices["catalog"])
    spare.stop()
    try:
        replies = [client.product("p-0001") for _ in range(10)]
        assert [r.status for r in replies] == [200] * 10
        assert {r.headers["x-upstream"] for r in replies} == {"catalog/" + microservices["catalog"].version}
    finally:
        microservices.route("catalog", microservices["catalog"])


def test_a_retry_never_goes_back_to_the_copy_that_just_failed():
    """The retry after a broken connection asks for another copy: with the round-robin counter
    shared by every request, "the next one" could otherwise be the dead copy again."""
    from shop.routing import Upstreams

    upstreams = Upstreams({"catalog": "http://a"})
    upstreams.replace("catalog", ["http://a", "http://b", "http://c"])
    assert all(upstreams.pick("catalog", avoid="http://b") != "http://b" for _ in range(60))
    assert {upstreams.pick("catalog", avoid="http://b") for _ in range(60)} == {"http://a", "http://c"}
    upstreams.replace("catalog", ["http://a"])
    assert upstreams.pick("catalog", avoid="http://a") == "http://a"  # the only copy: try it again
