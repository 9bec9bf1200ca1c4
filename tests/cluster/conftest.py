"""Cluster tests: they run against the course cluster (`make cluster`), on either provider.

Without a cluster they are skipped with the reason, except where MSALAB_REQUIRE_CLUSTER is
set (make test sets it after bringing the cluster up): there a missing cluster fails."""

from __future__ import annotations

import os

import pytest

from msalab import LabError, k8s


@pytest.fixture(scope="session")
def cluster() -> k8s.Cluster:
    try:
        return k8s.Cluster()
    except LabError as err:
        if os.environ.get("MSALAB_REQUIRE_CLUSTER"):
            pytest.fail(str(err))
        pytest.skip(f"no course cluster: {err.problem} (make cluster)")


@pytest.fixture(scope="module")
def shop_ns(cluster, request) -> str:
    """A namespace of the module's own with the whole shop in it; removed afterwards."""
    name = "test-" + request.module.__name__.split(".")[-1].replace("_", "-")[:40]
    cluster.fresh_namespace(name)
    cluster.deploy_shop(name)
    yield name
    cluster.delete_namespace(name)
