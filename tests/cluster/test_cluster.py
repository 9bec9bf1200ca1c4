"""What the course cluster must show, on kind and on the offline provider alike."""

from __future__ import annotations

import json
import subprocess
import time

import psutil
import pytest

from msalab import k8s, paths
from msalab.cluster import gobuild, kindnode, manage, podmetrics, servicerange
from msalab.errors import LabError

pytestmark = pytest.mark.cluster

def test_node_ready_and_system_pods_running(cluster):
    nodes = cluster.core.list_node().items
    assert nodes and all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)
    pods = cluster.core.list_namespaced_pod("kube-system").items
    assert pods and all(p.status.phase == "Running" for p in pods), [(p.metadata.name, p.status.phase) for p in pods]
    assert all(all(c.ready for c in p.status.container_statuses) for p in pods)


def test_the_course_containerd_listens_only_on_its_own_sockets(cluster):
    """A containerd of the course's on this machine (the offline cluster's, or the one kind's
    nerdctl provider drives) must never take the default /run/containerd socket, which
    belongs to another containerd on many machines (containerd 2.4's config moved the
    address: a stale [grpc] table is silently ignored and the default used)."""
    from msalab.cluster import nerdctl, offline

    pid, socket, state = offline._running().get("containerd"), offline.CONTAINERD_SOCKET, offline.CONTAINERD_STATE
    if pid is None and nerdctl._containerd_pids():
        pid, socket, state = nerdctl._containerd_pids()[0], nerdctl.SOCKET, nerdctl.STATE
    if pid is None:
        pytest.skip("kind on Docker: the nodes run in Docker's containerd, and each node's own is inside it")
    sockets = {c.laddr for c in psutil.Process(pid).net_connections(kind="unix") if c.laddr}
    assert str(socket) in sockets, sockets
    assert all(path.startswith(str(state)) for path in sockets), sockets


def test_shop_takes_an_order(cluster, shop_ns):
    shop = cluster.shop(shop_ns)
    reply = shop.order({"p-0002": 2})
    assert reply.status == 201 and reply.body["status"] == "confirmed"
    assert shop.get_order(reply.body["order_id"]).body == reply.body
    assert reply.headers["x-upstream-instance"].startswith("orders-")


def test_deleted_pod_is_replaced(cluster, shop_ns):
    before = cluster.pods(shop_ns, "payments")
    assert len(before) == 1
    cluster.core.delete_namespaced_pod(before[0].metadata.name, shop_ns)
    cluster.wait_until(lambda: any(p.metadata.name != before[0].metadata.name and p.status.phase == "Running"
                                   and all(c.ready for c in (p.status.container_statuses or []))
                                   for p in cluster.pods(shop_ns, "payments")), "a new payments pod", 90)
    cluster.wait_until(lambda: cluster.shop(shop_ns).order({"p-0003": 1}).status == 201, "orders to work again", 60)


def test_service_names_resolve_inside_a_pod(cluster, shop_ns):
    cluster_ip = cluster.core.read_namespaced_service("catalog", shop_ns).spec.cluster_ip
    code = ("import socket; print(socket.gethostbyname('catalog'), "
            f"socket.gethostbyname('catalog.{shop_ns}.svc.cluster.local'))")
    assert cluster.exec_python(shop_ns, "deploy/gateway", code).split() == [cluster_ip, cluster_ip]


def test_scaled_deployment_spreads_requests(cluster, shop_ns):
    cluster.kubectl("scale", "deployment/catalog", "--replicas=3", "-n", shop_ns)
    cluster.wait_rollout(shop_ns, "catalog")
    cluster.wait_until(lambda: len(cluster.requests_by_pod(shop_ns, "catalog", 30)) == 3,
                       "requests to reach all three catalog pods", 60, every_s=2)
    spread = cluster.requests_by_pod(shop_ns, "catalog", 90)
    assert len(spread) == 3 and min(spread.values()) >= 10, spread
    cluster.kubectl("scale", "deployment/catalog", "--replicas=1", "-n", shop_ns)


def test_service_sends_only_to_ready_pods(cluster, shop_ns):
    cluster.kubectl("scale", "deployment/inventory", "--replicas=2", "-n", shop_ns)
    cluster.wait_rollout(shop_ns, "inventory")
    unready = cluster.pods(shop_ns, "inventory")[0].metadata.name
    reply = cluster.pod_client(shop_ns, unready).faults("inventory", ready=False)
    assert reply.status == 200 and reply.body["ready"] is False
    cluster.wait_until(lambda: _ready_addresses(cluster, shop_ns, "inventory") == 1, "the endpoint to drop", 30)
    # kube-proxy rewrites the node's rules from the slice a moment later (it batches changes).
    cluster.wait_until_kube_proxy_skips(shop_ns, "inventory", unready, path="/api/inventory/p-0001")
    seen = cluster.requests_by_pod(shop_ns, "inventory", 40, path="/api/inventory/p-0001")
    assert unready not in seen and sum(seen.values()) == 40, seen
    cluster.kubectl("scale", "deployment/inventory", "--replicas=1", "-n", shop_ns)


def test_a_service_with_no_ready_pod_is_refused_inside_the_node(cluster, shop_ns, connect_from, service_without_pods):
    """Its address was never rewritten to a pod's, so only the node's routing rules keep the
    packet in (servicerange.py): refused at once as "no route to host", never answered from
    beyond the node, never left to time out."""
    assert servicerange.in_place(manage.node_shell("ip rule show")), "the node lacks the Service range's rules"
    seen = connect_from(shop_ns, "deploy/gateway", service_without_pods(shop_ns), 80)
    assert seen.get("errno") == "EHOSTUNREACH" and seen["seconds"] < 3, seen


def _ready_addresses(cluster, ns: str, service: str) -> int:
    out = cluster.kubectl("get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}", "-o",
                          "json")
    return sum(1 for s in json.loads(out)["items"] for e in (s.get("endpoints") or [])
               if e.get("conditions", {}).get("ready"))


CONFIG_POD = """
apiVersion: v1
kind: Pod
metadata: {name: config-reader}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 10001}
  containers:
    - name: reader
      image: msalab/shop:0.3.0
      imagePullPolicy: IfNotPresent
      command: ["python", "-c", "import time; time.sleep(3600)"]
      env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
      volumeMounts:
        - {name: settings, mountPath: /etc/settings}
  volumes:
    - name: settings
      configMap: {name: settings}
"""


def test_configmap_change_reaches_the_volume_not_the_env(cluster, shop_ns):
    cluster.kubectl("create", "configmap", "settings", "--from-literal=greeting=hello", "-n", shop_ns)
    cluster.kubectl("apply", "-n", shop_ns, "-f", "-", input_text=CONFIG_POD)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/config-reader", "-n", shop_ns, "--timeout=90s")
    read = "import os; print(os.environ['GREETING'], open('/etc/settings/greeting').read())"
    assert cluster.exec_python(shop_ns, "config-reader", read).split() == ["hello", "hello"]
    cluster.kubectl("patch", "configmap", "settings", "-n", shop_ns, "-p", '{"data": {"greeting": "bonjour"}}')
    started = time.monotonic()
    cluster.wait_until(lambda: cluster.exec_python(shop_ns, "config-reader", read).split()[1] == "bonjour",
                       "the mounted file to change", 150, every_s=2)
    print(f"mounted ConfigMap updated after {time.monotonic() - started:.0f} s")
    assert cluster.exec_python(shop_ns, "config-reader", read).split() == ["hello", "bonjour"]


def test_kubectl_top_pods(cluster, shop_ns):
    def top() -> str:
        result = subprocess.run([*cluster._kubectl, "top", "pods", "-n", shop_ns, "--no-headers"],
                                capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else ""

    # metrics-server first: if it has no numbers, the error shows each link of the chain.
    podmetrics.wait_for(cluster, shop_ns, "gateway-", 120, manage.kubelet_log())
    cluster.wait_until(lambda: "gateway-" in top(), "kubectl top to list the shop's pods", 30, every_s=5)
    row = next(line for line in top().splitlines() if line.startswith("gateway-"))
    assert row.split()[1].endswith("m") and row.split()[2].endswith("Mi")



def test_cadvisor_measures_a_new_pod_not_its_empty_cgroup(cluster, shop_ns):
    """A new pod's cgroup first reads 0 bytes in cAdvisor (Lab III.6 once took that for a
    measurement): pod_memory_mib waits for the real one, for the new pod as for the old."""
    old = cluster.pods(shop_ns, "inventory")[0].metadata.name
    cluster.core.delete_namespaced_pod(old, shop_ns, grace_period_seconds=0)
    cluster.wait_until(lambda: any(p.metadata.name != old and p.status.phase == "Running"
                                   for p in cluster.pods(shop_ns, "inventory")), "a new inventory pod", 90)
    memory = cluster.pod_memory_mib(shop_ns)
    new = next(p.metadata.name for p in cluster.pods(shop_ns, "inventory") if p.metadata.name != old)
    assert new in memory and old not in memory, memory
    running = {p.metadata.name for p in cluster.core.list_namespaced_pod(shop_ns).items
               if p.status.phase == "Running" and p.metadata.deletion_timestamp is None}
    # Every running pod (earlier tests add some); each of the shop's is a Python service of 20-160 MiB.
    shop = {name: mib for name, mib in memory.items() if name.split("-")[0] in k8s.SHOP_SERVICES}
    assert set(memory) == running and all(mib > 0 for mib in memory.values()), memory
    assert len(shop) >= 5 and all(20 < mib < 160 for mib in shop.values()), shop


HPA = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: catalog}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: catalog}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 15   # default 300 s: shorter so the test sees it
      policies: [{type: Percent, value: 100, periodSeconds: 15}]
"""

def test_hpa_scales_up_under_load_and_back_down(cluster, shop_ns):
    cluster.kubectl("apply", "-n", shop_ns, "-f", "-", input_text=HPA)
    replicas = lambda: cluster.apps.read_namespaced_deployment("catalog", shop_ns).spec.replicas  # noqa: E731
    podmetrics.wait_for(cluster, shop_ns, "catalog-", 120, manage.kubelet_log())  # what the HPA reads
    load = cluster.background_load(shop_ns, "http://catalog:8080/api/products?limit=200")
    try:
        cluster.wait_until(lambda: replicas() > 1, "the HPA to add catalog pods", 200, every_s=5)
    except LabError as err:
        raise AssertionError(f"{err}\n{podmetrics.explain(cluster, shop_ns, 'catalog-', manage.kubelet_log())}")
    finally:
        load.stop()
    cluster.wait_until(lambda: replicas() == 1, "the HPA to scale catalog back to 1", 240, every_s=5)
    cluster.kubectl("delete", "hpa", "catalog", "-n", shop_ns)


INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  ingressClassName: contour
  rules:
    - host: shop.ingress.test
      http:
        paths:
          - {path: /api/products, pathType: Prefix, backend: {service: {name: catalog, port: {name: http}}}}
          - {path: /api/inventory, pathType: Prefix, backend: {service: {name: inventory, port: {name: http}}}}
"""

HTTP_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: shop, namespace: envoy-gateway-system}]
  hostnames: [shop.gateway.test]
  rules:
    - matches: [{path: {type: PathPrefix, value: /api/products}}]
      backendRefs: [{name: catalog, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /api/inventory}}]
      backendRefs: [{name: inventory, port: 8080}]
"""


@pytest.mark.parametrize("manifest, host, proxy", [(INGRESS, "shop.ingress.test", "ingress_url"),
                                                   (HTTP_ROUTE, "shop.gateway.test", "gateway_url")],
                         ids=["Ingress (Contour)", "Gateway API (Envoy Gateway)"])
def test_routes_by_path_from_the_host(cluster, shop_ns, manifest, host, proxy):
    import httpx

    url = getattr(k8s, proxy)()
    cluster.kubectl("apply", "-n", shop_ns, "-f", "-", input_text=manifest)

    def served_by(path: str) -> str:
        try:
            answer = httpx.get(f"{url}{path}", headers={"Host": host}, timeout=3)
        except httpx.HTTPError:
            return ""
        return answer.headers.get("x-served-by", "") if answer.status_code == 200 else ""

    cluster.wait_until(lambda: served_by("/api/products/p-0001").startswith("catalog/"),
                       f"{host}/api/products to reach the catalog", 90, every_s=2)
    assert served_by("/api/inventory/p-0001").startswith("inventory/")
    assert served_by("/api/orders") == ""  # no rule for it: the proxy answers 404


def test_gateway_api_is_the_version_the_book_teaches(cluster):
    """The CRDs in the cluster carry the pinned bundle version, the Standard kinds that became
    GA after v1.3 are served, and Envoy Gateway (not Contour) has accepted the course's class."""
    from msalab import paths

    pinned = paths.versions()["cluster"]["gateway-api"]["version"]
    bundle = cluster.kubectl("get", "crd", "httproutes.gateway.networking.k8s.io", "-o",
                             "jsonpath={.metadata.annotations.gateway\\.networking\\.k8s\\.io/bundle-version}")
    assert bundle == pinned
    # At v1: v1.3's Experimental channel already had most of these kinds, as alpha versions.
    served_v1 = {r["name"] for r in json.loads(cluster.kubectl("get", "--raw", "/apis/gateway.networking.k8s.io/v1"))["resources"]}
    for kind in ("backendtlspolicies", "listenersets", "tlsroutes", "tcproutes", "udproutes"):
        assert kind in served_v1, f"{kind} is not served at gateway.networking.k8s.io/v1"
    accepted = cluster.kubectl("get", "gatewayclass", "envoy-gateway", "-o",
                               "jsonpath={.status.conditions[?(@.type=='Accepted')].status}")
    assert accepted == "True"


def test_the_preloaded_images_are_the_ones_kubeadm_asks_for(cluster):
    """kind's course node image preloads kubeadm's images by these names: one it does not find
    would be pulled, and fail. Here, not among the unit tests: kubeadm comes with the course's
    Kubernetes build, which a cold machine's unit-test phase does not have yet, and which the
    offline cluster and the course's node image have made by now (elsewhere it is built here)."""
    kube = paths.versions()["cluster"]["kubernetes"]
    kubeadm = gobuild.build_kubernetes(kube["version"], kube["staging_version"], kube["commands"]) / "kubeadm"
    asked = subprocess.run([str(kubeadm), "config", "images", "list", "--kubernetes-version", kube["version"]],
                           capture_output=True, text=True, check=True).stdout.split()
    # CoreDNS is the course's own add-on on kind's course node (kubeadm's phase is skipped).
    assert sorted(a for a in asked if "coredns" not in a) == sorted(kindnode.preloaded_images().values())
