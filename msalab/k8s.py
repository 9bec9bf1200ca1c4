"""The course cluster from Python: API clients, kubectl, and the shop through the API
server's service proxy (the same on kind and offline: no node IPs, no port juggling).

    cluster = k8s.Cluster()            # stops with the command to run if no cluster is up
    cluster.deploy_shop("lab-pods")
    cluster.shop("lab-pods").order({"p-0001": 1})
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import subprocess
import time
from pathlib import Path

from . import paths
from .cluster import external
from .errors import LabError
from .shop import ShopClient
from .workshop import mode as workshop_mode

# A pod's own cgroup (the last part of cAdvisor's `id`): cgroupfs driver, then systemd driver.
POD_CGROUP = re.compile(r"^pod[0-9a-f_-]+$|^kubelet-kubepods(-[a-z]+)?-pod[0-9a-f_]+\.slice$")

SHOP_MANIFESTS = paths.REPO / "cluster" / "shop"
SHOP_SERVICES = ("catalog", "inventory", "payments", "orders", "gateway")
SERVICE_KEY_SECRET = "shop-service-key"  # what orders, inventory and payments sign and check calls with


class Cluster:
    def __init__(self) -> None:
        from kubernetes import client, config

        from .cluster import manage

        self.kubeconfig = manage.kubeconfig()  # LabError with the fix when no cluster is up
        self._kubectl = manage.kubectl_command()
        self.api = config.new_client_from_config(config_file=self.kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.autoscaling = client.AutoscalingV2Api(self.api)
        self.networking = client.NetworkingV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)  # Gateway API objects are custom resources
        self.extensions = client.ApiextensionsV1Api(self.api)  # the CRDs that define them
        try:
            if workshop_mode.namespace():  # a student may read only their own namespace
                self.core.list_namespaced_pod(workshop_mode.namespace(), limit=1, _request_timeout=5)
            else:
                self.core.list_namespace(limit=1, _request_timeout=5)
        except Exception as err:  # noqa: BLE001: any failure here means the same to a learner
            raise LabError(f"the course cluster does not answer ({err.__class__.__name__})",
                           "python -m msalab cluster status; then make cluster") from err

    # -- kubectl, for the commands the labs show beside the Python ------------------------
    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None) -> str:
        result = subprocess.run([*self._kubectl, *args], capture_output=True, text=True, input=input_text)
        if check and result.returncode != 0:
            raise LabError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()[-400:]}",
                           "python -m msalab cluster status")
        return result.stdout

    def apply(self, path: Path | str, namespace: str | None = None) -> str:
        where = ["-n", namespace] if namespace else []
        if not _names_images_in_registry():
            return self.kubectl("apply", "-f", str(path), *where)
        # A cluster that pulls the course's images from a registry: the same manifests, in the
        # order kubectl reads a folder, naming the images there (msalab.cluster.external).
        path = Path(path)
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [path]
        return self.apply_text("\n---\n".join(f.read_text() for f in files), namespace)

    def apply_text(self, text: str, namespace: str | None = None) -> str:
        """kubectl apply of a manifest the lab filled in, its course images named where the cluster pulls them."""
        where = ["-n", namespace] if namespace else []
        if _names_images_in_registry():
            text = external.rewrite_images(text)
        return self.kubectl("apply", "-f", "-", *where, input_text=text)

    # -- namespaces: every lab and test works in its own, removed at the end --------------
    def fresh_namespace(self, name: str) -> str:
        if workshop_mode.namespace():  # a student's server: the student's own namespace, emptied
            workshop_mode.empty_namespace(self.kubectl)
            return workshop_mode.namespace()
        self.delete_namespace(name)
        self.kubectl("create", "namespace", name)
        self.kubectl("label", "namespace", name, "app.kubernetes.io/part-of=msalab-course")
        return name

    def delete_namespace(self, name: str, timeout_s: float = 120) -> None:
        if workshop_mode.namespace():  # the student's namespaces stay; what the lab made goes
            workshop_mode.empty_namespace(self.kubectl, workshop_mode.lab_namespace(name))
            return
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", f"--timeout={int(timeout_s)}s")

    def namespace_exists(self, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        if workshop_mode.namespace():  # in a workshop, every lab namespace is one of the student's
            name = workshop_mode.lab_namespace(name)
        try:
            self.core.read_namespace(name)
            return True
        except ApiException as err:
            if err.status == 404:
                return False
            raise

    def left_over(self, name: str) -> list[str]:
        """What is left of a lab's namespace after delete_namespace: the namespace itself, or,
        in a workshop (where the namespace is the student's and stays), what the lab made in it."""
        if workshop_mode.namespace():
            if name in (workshop_mode.namespace(), workshop_mode.mesh_namespace()):
                return workshop_mode.lab_objects(self.kubectl, name)
            # A lab's own name for a namespace (not the one the workshop gave it): whatever labs
            # left in either of the student's namespaces.
            return [found for ns in filter(None, (workshop_mode.namespace(), workshop_mode.mesh_namespace()))
                    for found in workshop_mode.lab_objects(self.kubectl, ns)]
        return [name] if self.namespace_exists(name) else []

    # -- waiting -------------------------------------------------------------------------
    def wait_rollout(self, namespace: str, deployment: str, timeout_s: int = 120) -> None:
        self.kubectl("rollout", "status", f"deployment/{deployment}", "-n", namespace, f"--timeout={timeout_s}s")

    def wait_until(self, condition, what: str, timeout_s: float = 60, every_s: float = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(every_s)
        raise LabError(f"timed out after {timeout_s:.0f} s waiting for {what}", "python -m msalab cluster status")

    # -- the shop --------------------------------------------------------------------------
    def deploy_shop(self, namespace: str) -> None:
        self.ensure_service_key(namespace)
        self.apply(SHOP_MANIFESTS, namespace)
        for service in SHOP_SERVICES:
            self.wait_rollout(namespace, service)
        # Ready pods are not the end: kube-proxy must also have programmed the Services.
        shop = self.shop(namespace)
        self.wait_until(lambda: shop.products(1).status == 200 and shop.order({"p-0001": 1}).status == 201,
                        "the shop to answer through its gateway", 60)

    def ensure_service_key(self, namespace: str) -> None:
        """The Secret the shop's services sign their calls with (shop/servicecred.py): a random key
        made here, never one kept in git. One that exists is kept: running pods and new ones agree."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name=SERVICE_KEY_SECRET, labels={"app.kubernetes.io/part-of": "shop"}),
            string_data={"key": secrets.token_urlsafe(32)})
        try:
            self.core.create_namespaced_secret(namespace, secret)
        except ApiException as err:
            if err.status != 409:  # 409 Conflict: it is there already
                raise

    # -- Deployments: their ReplicaSets, revisions and rollback ---------------------------
    REVISION = "deployment.kubernetes.io/revision"

    def replica_sets(self, namespace: str, deployment: str) -> list:
        """The ReplicaSets a Deployment owns, oldest revision first."""
        owned = [rs for rs in self.apps.list_namespaced_replica_set(namespace).items
                 if any(o.kind == "Deployment" and o.name == deployment for o in rs.metadata.owner_references or [])]
        return sorted(owned, key=lambda rs: int(rs.metadata.annotations[self.REVISION]))

    def wait_old_pods_gone(self, namespace: str, deployment: str, timeout_s: float = 90) -> None:
        """`rollout status` says done once the new pods are ready, while the old ones may still be
        draining (preStop) and answering. Wait until only the current ReplicaSet's pods are left."""
        selector = self.apps.read_namespaced_deployment(deployment, namespace).spec.selector.match_labels
        labels = ",".join(f"{key}={value}" for key, value in selector.items())

        def only_current() -> bool:
            current = self.replica_sets(namespace, deployment)[-1].metadata.name
            pods = self.core.list_namespaced_pod(namespace, label_selector=labels).items
            return all(o.name == current for p in pods for o in p.metadata.owner_references or [])

        self.wait_until(only_current, f"the old pods of deployment {deployment} to finish", timeout_s, every_s=0.5)

    def rollback(self, namespace: str, deployment: str) -> int:
        """What `kubectl rollout undo` does: copy the previous revision's pod template back into
        the Deployment, which then rolls to it like to any new template. Returns that revision."""
        current = int(self.apps.read_namespaced_deployment(deployment, namespace).metadata.annotations[self.REVISION])
        older = [rs for rs in self.replica_sets(namespace, deployment) if int(rs.metadata.annotations[self.REVISION]) < current]
        if not older:
            raise LabError(f"deployment {deployment} has no earlier revision to go back to",
                           f"kubectl rollout history deployment/{deployment} -n {namespace}")
        template = self.api.sanitize_for_serialization(older[-1].spec.template)
        template["metadata"]["labels"].pop("pod-template-hash", None)  # the ReplicaSet's own label
        self.apps.patch_namespaced_deployment(deployment, namespace, {"spec": {"template": template}})
        return int(older[-1].metadata.annotations[self.REVISION])

    def wait_until_kube_proxy_skips(self, namespace: str, service: str, pod: str, path: str = "/api/products/p-0001",
                                    timeout_s: float = 30) -> None:
        """Wait until new connections to `service` no longer reach `pod`. The EndpointSlice
        changes first; kube-proxy then rewrites the node's rules from it, batching changes
        (at most once a second by default), so for a moment the old rules still apply."""
        self.wait_until(lambda: self.requests_by_pod(namespace, service, 20, path).get(pod, 0) == 0,
                        f"kube-proxy to stop sending {service}'s new connections to {pod}", timeout_s, every_s=1)

    def requests_by_pod(self, namespace: str, service: str, count: int, path: str = "/api/products/p-0001",
                        source: str = "deploy/gateway") -> dict[str, int]:
        """`count` requests to a Service from inside a pod, each on a new connection (kube-proxy
        balances connections, not requests), counted by the pod that answered (X-Instance)."""
        code = (
            "import json, urllib.request\nseen = {}\n"
            f"for _ in range({count}):\n"
            f"    with urllib.request.urlopen('http://{service}:8080{path}', timeout=5) as answer:\n"
            "        pod = answer.headers['X-Instance']\n"
            "        seen[pod] = seen.get(pod, 0) + 1\n"
            "print(json.dumps(seen))\n"
        )
        return json.loads(self.exec_python(namespace, source, code))

    # -- metrics, by layer (Lab III.6) -------------------------------------------------
    def node_name(self) -> str:
        return self.core.list_node().items[0].metadata.name  # the course clusters have one node

    def kubelet_metrics(self, path: str = "metrics/cadvisor") -> str:
        """The kubelet's Prometheus text (metrics/cadvisor: per container; metrics/resource:
        what metrics-server reads), through the API server's node proxy (the course clusters have
        one node). In a workshop, from the workshop's service that serves each student their own
        pods' series, of every node (the node's proxy would reach every pod on the node)."""
        if workshop_mode.namespace():  # each node's, where a workshop's cluster has several
            return "".join(workshop_mode.kubelet_metrics(node.metadata.name, path) for node in self.core.list_node().items)
        return self.core.connect_get_node_proxy_with_path(self.node_name(), path)

    def cadvisor_by_pod(self, namespace: str, metric: str, pod: str | None = None) -> dict[str, tuple[float, float | None]]:
        """cAdvisor's `metric` for each pod of `namespace` (or just `pod`), from the pod's own
        cgroup, which holds all its containers: pod -> (value, when cAdvisor measured it).

        The kubelet labels two series per pod with container="": the pod's cgroup
        (/kubepods/.../pod<UID>) and its sandbox's (the pause container, one level below).
        Only the first is the whole pod; the `id` label tells them apart. Its last part is
        pod<UID> under the cgroupfs driver (the offline cluster) and
        kubelet-kubepods-<qos>-pod<UID>.slice under the systemd driver (kind)."""
        from . import promtext

        text = self.kubelet_metrics("metrics/cadvisor")
        return {labels["pod"]: (value, stamp)
                for labels, value, stamp in promtext.points(text, metric, namespace=namespace, container="")
                if POD_CGROUP.match(labels.get("id", "").rsplit("/", 1)[-1]) and (pod is None or labels.get("pod") == pod)}

    def pod_memory_mib(self, namespace: str, timeout_s: float = 90) -> dict[str, float]:
        """Each running pod's working-set memory (MiB) as cAdvisor measures it from the pod's
        cgroup. A new pod's cgroup shows up in cAdvisor with 0 bytes: it was read when the
        sandbox started, before the app joined it, and stays 0 until the next housekeeping
        round (about 10 s later). So wait until every running pod has a measurement above 0."""
        def measured():
            running = {p.metadata.name for p in self.core.list_namespaced_pod(namespace).items
                       if p.status.phase == "Running" and p.metadata.deletion_timestamp is None}
            memory = {pod: value / 2**20 for pod, (value, _) in
                      self.cadvisor_by_pod(namespace, "container_memory_working_set_bytes").items() if pod in running}
            if running and memory.keys() == running and all(memory.values()):
                found.update(memory)
            return bool(found)

        found: dict[str, float] = {}  # the reading that passed is the one returned: no second read
        self.wait_until(measured, f"cAdvisor to measure every running pod of {namespace} (a new pod reads 0 until then)",
                        timeout_s, every_s=2)
        return found

    def resource_usage(self, kind: str, namespace: str | None = None) -> dict[str, tuple[float, float]]:
        """metrics-server's view (`kubectl top`): name -> (CPU millicores, memory MiB) for
        kind "nodes" or "pods" (pods: summed over their containers)."""
        from kubernetes.utils import parse_quantity

        group = ("metrics.k8s.io", "v1beta1")
        if kind == "nodes":
            items = self.custom.list_cluster_custom_object(*group, "nodes")["items"]
            usages = {i["metadata"]["name"]: [i["usage"]] for i in items}
        else:
            items = self.custom.list_namespaced_custom_object(*group, namespace, "pods")["items"]
            usages = {i["metadata"]["name"]: [c["usage"] for c in i["containers"]] for i in items}
        return {name: (float(sum(parse_quantity(u["cpu"]) for u in us)) * 1000,
                       float(sum(parse_quantity(u["memory"]) for u in us)) / 2**20)
                for name, us in usages.items()}

    def cpu_millicores(self, namespace: str, pod_prefix: str) -> float:
        """CPU the pods named pod_prefix* use now, from the resource metrics API
        (metrics-server: what `kubectl top` and the HPA read)."""
        from kubernetes.client.exceptions import ApiException

        try:
            usage = self.resource_usage("pods", namespace)
        except ApiException:
            return float("nan")  # metrics not there yet (metrics-server starting): no reading
        return sum(cpu for name, (cpu, _) in usage.items() if name.startswith(pod_prefix))

    def background_load(self, namespace: str, url: str, workers: int = 2) -> "PodLoad":
        """Keep requesting `url` from inside the gateway pod until .stop(): load that the
        cluster sees as CPU in the pods it reaches (for HPA lessons)."""
        return PodLoad(self, namespace, url, workers)

    def exec_python(self, namespace: str, target: str, code: str, timeout_s: float = 120) -> str:
        """Run Python inside a shop pod (the image has it): how labs look from inside."""
        return self.kubectl("exec", "-n", namespace, target, "--", "python", "-c", code)

    def service_url(self, namespace: str, service: str, port: str = "http") -> str:
        return f"{self.api.configuration.host}/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"

    def shop(self, namespace: str, service: str = "gateway") -> ShopClient:
        """A ShopClient that reaches a Service through the API server's service proxy."""
        return self._proxy_client(self.service_url(namespace, service))

    def service_client(self, namespace: str, service: str, port: str) -> ShopClient:
        """An HTTP client for any Service port (by its name), through the API server's service proxy."""
        return self._proxy_client(self.service_url(namespace, service, port))

    def pod_client(self, namespace: str, pod: str, port: int = 8080) -> ShopClient:
        """A ShopClient for one pod (its fault knobs, say), through the API server's pod proxy."""
        return self._proxy_client(f"{self.api.configuration.host}/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy")

    def _proxy_client(self, url: str) -> ShopClient:
        cfg = self.api.configuration
        tls = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            tls.load_cert_chain(cfg.cert_file, cfg.key_file)
        # A kubeconfig with a token (a workshop student's): the client keeps it as BearerToken.
        token = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
        headers = {"Authorization": token} if token else {}
        return ShopClient(url, timeout_s=10, verify=tls, headers=headers)

    def ready_pods(self, namespace: str, deployment: str) -> int:
        """The Deployment's ready pods, as the API reports them (`kubectl get deployment`)."""
        return self.apps.read_namespaced_deployment(deployment, namespace).status.ready_replicas or 0

    def gateway_api_version(self) -> str:
        """The Gateway API release whose CRDs the cluster has (their bundle-version annotation)."""
        from kubernetes.client.exceptions import ApiException

        try:
            crd = self.extensions.read_custom_resource_definition("httproutes.gateway.networking.k8s.io")
        except ApiException as err:
            if err.status != 404:
                raise
            raise LabError("the cluster has no Gateway API (no HTTPRoute CRD): it was set up without it",
                           "python -m msalab cluster down; python -m msalab cluster up") from None
        return (crd.metadata.annotations or {}).get("gateway.networking.k8s.io/bundle-version", "(not annotated)")

    def pods(self, namespace: str, app: str) -> list:
        return self.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={app}").items


def _node_host() -> str:
    """This machine, where the course cluster's node maps its Ingress and Gateway ports; in a
    workshop's server (a pod), the node's own address, where the same ports answer."""
    return workshop_mode.node_address() or "127.0.0.1"


def _names_images_in_registry() -> bool:
    """The cluster pulls the course's images from MSALAB_REGISTRY: a cluster of one's own, or a
    student's server on one. (A stray MSALAB_REGISTRY must not rename the images that the course
    cluster is given directly.)"""
    return bool((external.in_use() or workshop_mode.namespace()) and external.registry())


def ingress_url() -> str:
    """Where the cluster's Ingress controller (Contour's Envoy) answers on this machine."""
    return f"http://{_node_host()}:{paths.versions()['cluster']['ingress_host_port']}"


def gateway_url() -> str:
    """Where the cluster's Gateway API controller (Envoy Gateway's Envoy) answers on this machine."""
    return f"http://{_node_host()}:{paths.versions()['cluster']['gateway_host_port']}"


def ingress_client(host: str) -> ShopClient:
    """The shop as a browser on this machine would reach it through the Ingress: Contour's
    Envoy on 127.0.0.1:8080, with the route's host name in the Host header (no DNS entry needed)."""
    return ShopClient(ingress_url(), timeout_s=5, headers={"Host": host})


def gateway_client(host: str) -> ShopClient:
    """The same through the course's Gateway: Envoy Gateway's Envoy on 127.0.0.1:8081."""
    return ShopClient(gateway_url(), timeout_s=5, headers={"Host": host})


class PodLoad:
    """Bursts of 15 s of requests, from inside a pod, until stopped; a burst in flight ends
    by itself, so nothing keeps loading after stop()."""

    BURST = (
        "import time, urllib.request\nend = time.time() + 15\nwhile time.time() < end:\n"
        "    try:\n        urllib.request.urlopen('{url}', timeout=5).read()\n"
        "    except Exception:\n        time.sleep(0.1)\n"
    )

    def __init__(self, cluster: Cluster, namespace: str, url: str, workers: int) -> None:
        import threading

        self._stop = threading.Event()
        code = self.BURST.format(url=url)
        command = [*cluster._kubectl, "exec", "-n", namespace, "deploy/gateway", "--", "python", "-c", code]

        def work() -> None:
            while not self._stop.is_set():
                subprocess.run(command, capture_output=True, timeout=60)

        self._threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
