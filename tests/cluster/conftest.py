"""Cluster tests: they run against the course cluster (`make cluster`), on either provider.

Without a cluster they are skipped with the reason, except where MSALAB_REQUIRE_CLUSTER is
set (make test sets it after bringing the cluster up): there a missing cluster fails."""

from __future__ import annotations

import json
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


# What a pod sees when it opens a connection: an answer's first line, or the refusal's errno.
_CONNECT = """
import errno, json, socket, sys, time
started = time.monotonic()
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\nHost: probe\\r\\n\\r\\n")
        outcome = {"answered": s.recv(200).split(b"\\r\\n")[0].decode(errors="replace")}
except OSError as err:
    outcome = {"errno": errno.errorcode.get(err.errno, str(err))}
outcome["seconds"] = round(time.monotonic() - started, 2)
print(json.dumps(outcome))
"""


@pytest.fixture(scope="session")
def connect_from(cluster):
    """connect_from(namespace, pod_or_deploy, address, port): what that pod sees connecting there."""
    def connect(namespace: str, target: str, address: str, port: int) -> dict:
        printed = cluster.kubectl("exec", "-n", namespace, target, "--", "python3", "-c", _CONNECT, address, str(port))
        return json.loads(printed.strip().splitlines()[-1])
    return connect


@pytest.fixture
def service_without_pods(cluster):
    """make(namespace): a Service whose selector matches no pod; its ClusterIP. Deleted afterwards."""
    made = []

    def make(namespace: str) -> str:
        cluster.kubectl("create", "service", "clusterip", "nobody-home", "--tcp=80:8080", "-n", namespace)
        made.append(namespace)
        return cluster.core.read_namespaced_service("nobody-home", namespace).spec.cluster_ip
    yield make
    for namespace in made:
        cluster.kubectl("delete", "service", "nobody-home", "-n", namespace, "--ignore-not-found", check=False)
