"""Part IV's mesh on the course cluster: install, injection, a split within its statistical
bound, STRICT mutual TLS refusing plaintext, a 403 from a policy, a proxy metric scraped by the
course's Prometheus, and an uninstall that leaves the cluster's cluster-wide objects exactly
as they were before the install."""

from __future__ import annotations

import pytest

from msalab.cluster import mesh as istio
from msalab.mesh import Mesh, binomial_bounds, calls_from, tally

PRODUCT = "http://catalog:8080/api/products/p-0001"
# What an install can add cluster-wide; every one must be gone after the uninstall.
CLUSTER_SCOPED = ("customresourcedefinitions", "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                  "namespaces", "clusterroles", "clusterrolebindings", "gatewayclasses")


def cluster_objects(cluster) -> set[str]:
    return set(cluster.kubectl("get", ",".join(CLUSTER_SCOPED), "-o", "name").split())


@pytest.fixture(scope="module")
def mesh(cluster):
    if istio.installed():  # a lab installed it earlier: start from a cluster without it
        assert istio.uninstall() == []
    before = cluster_objects(cluster)
    yield Mesh(cluster)
    assert istio.uninstall() == []
    assert cluster_objects(cluster) == before, "mesh uninstall left cluster-wide objects behind"


@pytest.fixture(scope="module")
def meshed_shop(cluster, mesh):
    namespace = mesh.meshed_namespace("test-mesh")
    cluster.deploy_shop(namespace)
    yield namespace
    cluster.delete_namespace(namespace)


@pytest.fixture(autouse=True)
def shop_answers_again(cluster, mesh, meshed_shop):
    """Each test starts and ends with the meshed shop answering from outside and from inside:
    a rule a test removed is gone from every proxy, and from every connection opened under it
    (pooled ones included: the API server's to the gateway's proxy), once it has settled."""
    def answering():
        return (cluster.shop(meshed_shop).products(1).status,
                tally(calls_from(cluster, meshed_shop, "gateway", PRODUCT, 3)).get("v1", 0))
    assert mesh.settled(meshed_shop, answering, (200, 3)) == (200, 3)
    yield
    assert mesh.settled(meshed_shop, answering, (200, 3)) == (200, 3)


def test_every_shop_pod_gets_a_native_sidecar_in_sync(cluster, mesh, meshed_shop):
    pods = cluster.core.list_namespaced_pod(meshed_shop).items
    sidecars = {p.metadata.name: [c.name for c in p.spec.init_containers or [] if c.restart_policy == "Always"] for p in pods}
    assert len(pods) == 5 and all(names == ["istio-proxy"] for names in sidecars.values()), sidecars
    assert cluster.shop(meshed_shop).products(1).status == 200
    synced = mesh.proxy_status(meshed_shop)
    assert len(synced) == 5 and all(set(types.values()) == {"SYNCED"} for types in synced.values()), synced
    stats = mesh.envoy(meshed_shop, "catalog", "stats")
    # Upstream Envoy took every listener and cluster istiod sent (no Istio-only filter).
    assert "listener_manager.lds.update_rejected: 0" in stats and "cluster_manager.cds.update_rejected: 0" in stats
    # The course's drain time (msalab.cluster.mesh): a replaced rule is gone from every connection 5 s after.
    assert mesh.drain_time_s(meshed_shop) == 5.0


def test_a_weighted_split_lands_inside_its_binomial_bound(cluster, mesh, meshed_shop):
    mesh.apply("catalog-v2.yaml", meshed_shop)
    cluster.wait_rollout(meshed_shop, "catalog-v2")
    try:
        mesh.apply("catalog-destinationrule.yaml", meshed_shop)
        mesh.apply("catalog-virtualservice-80-20.yaml", meshed_shop)
        mesh.wait_synced(meshed_shop)
        split = tally(calls_from(cluster, meshed_shop, "gateway", PRODUCT, 400))
        low, high = binomial_bounds(400, 0.2)
        assert sum(split.values()) == 400 and set(split) == {"v1", "v2"}, split
        assert low <= split["v2"] <= high, split
    finally:
        for name in ("catalog-virtualservice-80-20.yaml", "catalog-destinationrule.yaml", "catalog-v2.yaml"):
            mesh.delete(name, meshed_shop)


def test_strict_mtls_refuses_plaintext_and_serves_the_mesh(cluster, mesh, meshed_shop):
    assert cluster.shop(meshed_shop).products(1).status == 200  # PERMISSIVE: plaintext accepted
    mesh.apply("peerauthentication-strict.yaml", meshed_shop)
    try:
        # The API server's proxy is a client outside the mesh: plaintext, now refused.
        cluster.wait_until(lambda: cluster.shop(meshed_shop).products(1).status != 200, "STRICT to refuse plaintext", 30)
        assert tally(calls_from(cluster, meshed_shop, "gateway", PRODUCT, 5)) == {"v1": 5}  # mTLS between sidecars
    finally:
        mesh.delete("peerauthentication-strict.yaml", meshed_shop)
    cluster.wait_until(lambda: cluster.shop(meshed_shop).products(1).status == 200, "plaintext to be accepted again", 30)


def test_an_empty_authorization_policy_denies_with_403(cluster, mesh, meshed_shop):
    assert tally(calls_from(cluster, meshed_shop, "gateway", PRODUCT, 3)) == {"v1": 3}
    mesh.apply("authorizationpolicy-deny-all.yaml", meshed_shop)
    try:
        # In force once every connection opened before it has drained (a pooled one may still
        # carry a call under the old listener): then every call is denied.
        denied = mesh.settled(meshed_shop, lambda: [status for status, _ in calls_from(cluster, meshed_shop, "gateway", PRODUCT, 5)],
                              [403] * 5)
        assert denied == [403] * 5, denied
    finally:
        mesh.delete("authorizationpolicy-deny-all.yaml", meshed_shop)


def test_prometheus_scrapes_a_proxy_metric(cluster, mesh, meshed_shop):
    """The course's Prometheus (Lab IV.5's) reads Envoy's per-service counters from the proxies."""
    from msalab.mesh import deploy_telemetry, promql, remove_telemetry

    deploy_telemetry(cluster, meshed_shop)
    try:
        for _ in range(5):
            assert cluster.shop(meshed_shop).products(1).status == 200
        query = 'sum(envoy_cluster_upstream_rq_completed{app="catalog", cluster_name="inbound|8080||"})'
        cluster.wait_until(lambda: (promql(cluster, meshed_shop, query) or [{"value": 0}])[0]["value"] >= 5,
                           "Prometheus to scrape the catalog proxy's inbound counter", 90, every_s=3)
    finally:
        remove_telemetry(cluster, meshed_shop)
