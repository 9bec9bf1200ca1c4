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


def test_copies_share_requests(microservices):
    copies = microservices.scale("catalog", 3, first_port=ports.free_port())
    result = [microservices.client.product("p-0001") for _ in range(30)]
    instances = {r.headers["x-upstream-instance"] for r in result if r.ok}
    assert len(instances) == 3 and all(r.ok for r in result)
    microservices.scale("catalog", 1)
    assert len(copies) == 3
