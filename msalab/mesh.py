"""Part IV's labs: the shop in Istio's mesh, and what its proxies really do.

    mesh = Mesh(cluster)                  # installs Istio if it is not there (idempotent)
    namespace = mesh.meshed_namespace("lab-mesh")
    cluster.deploy_shop(namespace)        # every pod gets its sidecar
    mesh.proxy_config("clusters", namespace, "gateway", "--fqdn", "catalog")

What the labs read comes from the proxies and istiod themselves (istioctl, the proxies' admin
API through pilot-agent, their access logs), never from what the documentation says they do.
"""

from __future__ import annotations

import base64
import json
import math
import time

from . import paths
from .cluster import mesh as istio
from .errors import LabError
from .workshop import mode as workshop_mode

INJECTION_LABEL = "istio-injection"  # on a namespace: its new pods get a sidecar (=enabled)

MANIFESTS = paths.REPO / "cluster" / "labs" / "mesh"
PROXY = "istio-proxy"


class Mesh:
    def __init__(self, cluster) -> None:
        self.cluster = cluster
        if not istio.control_plane_ready():
            print("installing Istio (python -m msalab mesh install) ...", flush=True)
            print(istio.install())

    # -- namespaces and manifests -----------------------------------------------------------
    def meshed_namespace(self, name: str) -> str:
        """A fresh namespace whose new pods get a sidecar (the label the injection webhook reads).
        In a workshop: the student's namespace inside the mesh, emptied (it carries the label)."""
        if workshop_mode.namespace():
            namespace = workshop_mode.mesh_namespace()
            if namespace is None:
                raise LabError("this workshop gives you no namespace inside the mesh: Istio was not installed "
                               "when the workshop started", "ask the instructor (the instructors' guide: Part IV)")
            workshop_mode.empty_namespace(self.cluster.kubectl, namespace)
            # A lab (IV.6) or the student may have taken the label off: the one label they may set.
            self.cluster.kubectl("label", "namespace", namespace, f"{INJECTION_LABEL}=enabled", "--overwrite")
            return namespace
        namespace = self.cluster.fresh_namespace(name)
        self.cluster.kubectl("label", "namespace", namespace, f"{INJECTION_LABEL}=enabled")
        return namespace

    def namespace_without_injection(self, name: str) -> str:
        """A fresh namespace as namespaces are usually made: without the injection label, so that
        its pods get no sidecar. In a workshop: the student's namespace inside the mesh, emptied,
        with the label taken off (a student may set or remove that label there, and nothing else;
        their own namespace's Pod Security level would refuse the sidecars)."""
        if not workshop_mode.namespace():
            return self.cluster.fresh_namespace(name)
        namespace = self.meshed_namespace(name)
        self.cluster.kubectl("label", "namespace", namespace, f"{INJECTION_LABEL}-")
        return namespace

    def tracing_provider(self, namespace: str) -> str:
        """The mesh config's tracing provider for the spans of `namespace`'s proxies: the course's
        (Jaeger in lab-telemetry), or in a workshop the student's own, which the hub adds to the
        mesh config (Jaeger in their mesh namespace; cluster/workshop/hub-mesh.yaml)."""
        if workshop_mode.namespace():
            return istio.student_tracing_provider(namespace)
        return istio.TRACING_PROVIDER

    def apply(self, manifest: str, namespace: str, **placeholders: str) -> str:
        """kubectl apply one file of cluster/labs/mesh, with its UPPERCASE placeholders filled in."""
        text = (MANIFESTS / manifest).read_text()
        for key, value in placeholders.items():
            text = text.replace(key, value)
        return self.cluster.apply_text(text, namespace)

    def delete(self, manifest: str, namespace: str) -> None:
        self.cluster.kubectl("delete", "-n", namespace, "--ignore-not-found", "-f", str(MANIFESTS / manifest))

    # -- the pods and their proxies ---------------------------------------------------------
    def pod(self, namespace: str, app: str) -> str:
        pods = [p for p in self.cluster.pods(namespace, app) if p.metadata.deletion_timestamp is None]
        if not pods:
            raise LabError(f"no {app} pod in {namespace}", f"python -m msalab kubectl -- get pods -n {namespace}")
        return pods[0].metadata.name

    def containers(self, namespace: str, app: str) -> dict[str, str]:
        """Each container of the app's pod -> its kind: init, sidecar (a native one) or app."""
        spec = self.cluster.core.read_namespaced_pod(self.pod(namespace, app), namespace).spec
        kinds = {c.name: ("sidecar" if c.restart_policy == "Always" else "init") for c in spec.init_containers or []}
        return {**kinds, **{c.name: "app" for c in spec.containers}}

    def interception_rules(self, namespace: str, app: str) -> list[str]:
        """The NAT rules istio-init wrote into the pod's network namespace: it prints them
        (iptables-save) when it is done, so its log is the record on every provider."""
        log = self.cluster.kubectl("logs", "-n", namespace, self.pod(namespace, app), "-c", "istio-init")
        saved = log[log.rfind("*nat"):]
        return [line for line in saved.splitlines() if line.startswith(("-A ", ":ISTIO"))]

    def proxy_config(self, kind: str, namespace: str, app: str, *filters: str) -> str:
        """istioctl proxy-config KIND POD.NAMESPACE [filters]: the proxy's own configuration."""
        pod = f"{self.pod(namespace, app)}.{namespace}"
        return istio.run_istioctl("proxy-config", kind, pod, *filters).stdout

    def envoy(self, namespace: str, app: str, path: str) -> str:
        """GET a path of the proxy's admin API (localhost:15000 inside the pod), via pilot-agent."""
        return self._envoy_of_pod(namespace, self.pod(namespace, app), path)

    def _envoy_of_pod(self, namespace: str, pod: str, path: str) -> str:
        return self.cluster.kubectl("exec", "-n", namespace, pod, "-c", PROXY, "--", "pilot-agent", "request", "GET", path)

    def stats(self, namespace: str, app: str, contains: str) -> dict[str, float]:
        """Envoy's counters and gauges whose name contains `contains`."""
        return _stat_values(self.envoy(namespace, app, f"stats?filter={contains}"))

    def _proxy_pods(self, namespace: str) -> list[str]:
        """The running pods of the namespace that have a proxy."""
        return [pod.metadata.name for pod in self.cluster.core.list_namespaced_pod(namespace).items
                if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None
                and PROXY in [c.name for c in [*(pod.spec.init_containers or []), *pod.spec.containers]]]

    def draining(self, namespace: str) -> dict[str, float]:
        """Each proxy of the namespace that still serves connections it accepted under a listener
        or filter chain istiod has since replaced, or still warms a new one (the old chains start
        draining once it is warm) -> how many listeners and chains that is."""
        found = {}
        for pod in self._proxy_pods(namespace):
            count = sum(_stat_values(self._envoy_of_pod(namespace, pod, "stats?filter=_(draining|warming)$")).values())
            if count:
                found[pod] = count
        return found

    def drain_time_s(self, namespace: str) -> float:
        """How long the namespace's proxies keep serving connections under a replaced listener
        (Envoy's --drain-time-s, from the mesh's drainDuration; 0 without proxies)."""
        pods = self._proxy_pods(namespace)
        if not pods:
            return 0.0
        options = json.loads(self._envoy_of_pod(namespace, pods[0], "server_info"))["command_line_options"]
        return float(options["drain_time"].rstrip("s"))

    def access_log(self, namespace: str, app: str, request_id: str) -> list[str]:
        """The proxy's access-log lines for one request (the mesh logs every request it carries)."""
        log = self.cluster.kubectl("logs", "-n", namespace, self.pod(namespace, app), "-c", PROXY, "--tail=400")
        return [line for line in log.splitlines() if request_id in line]

    def analyze(self, namespace: str) -> list[str]:
        """istioctl analyze's findings for the namespace, one line each ("Error [IST0101] ...")."""
        out = istio.run_istioctl("analyze", "-n", namespace, check=False)
        return [line for line in (out.stdout + out.stderr).splitlines() if "[IST" in line]

    def proxy_status(self, namespace: str) -> dict[str, dict[str, str]]:
        """Each proxy of the namespace -> its xDS types and their sync state, as istiod sees them."""
        return {name: types for name, types in istio.proxy_sync().items() if name.endswith(f".{namespace}")}

    def identity(self, namespace: str, app: str) -> str:
        """The SPIFFE ID in the certificate the proxy presents (its URI SAN), read from the proxy."""
        from cryptography import x509

        secrets = json.loads(self.proxy_config("secret", namespace, app, "-o", "json"))
        for entry in secrets["dynamicActiveSecrets"]:
            chain = entry.get("secret", {}).get("tlsCertificate", {}).get("certificateChain", {})
            if chain.get("inlineBytes"):
                cert = x509.load_pem_x509_certificate(base64.b64decode(chain["inlineBytes"]))
                return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
                    .get_values_for_type(x509.UniformResourceIdentifier)[0]
        raise LabError(f"the {app} proxy has no workload certificate yet", f"python -m msalab istioctl -- proxy-config secret {namespace}")

    def wait_synced(self, namespace: str, timeout_s: float = 60) -> None:
        """Until every proxy in the namespace has acknowledged istiod's latest config."""
        self.cluster.wait_until(lambda: all(state == "SYNCED" for types in self.proxy_status(namespace).values()
                                            for state in types.values()),
                                f"the proxies in {namespace} to acknowledge istiod's config", timeout_s)

    def wait_drained(self, namespace: str) -> None:
        """Until the proxies in the namespace serve no connection under a listener they had
        replaced by now. Each drain ends after the drain time, so that is the longest wait; a
        drain still running then began later, for someone else's change (in a shared mesh every
        proxy holds every Service's listeners), and is not waited for."""
        deadline = time.monotonic() + self.drain_time_s(namespace) + 2
        while self.draining(namespace) and time.monotonic() < deadline:
            time.sleep(1)

    def settled(self, namespace: str, measure, expected, timeout_s: float = 60):
        """What measure() gives once a rule just applied or deleted is in force in the namespace.
        measure() again until it gives `expected` (the proxies on the measured path have the
        change), then wait until they have drained the connections they accepted before it (the
        drain time: 5 s in the course's mesh, 45 s in Istio's default): only then can no pooled
        connection carry a call under the old rule. Measured once more after that, so the check
        judges the steady state, and fails if the rule is wrong (it never gives what was expected)."""
        deadline = time.monotonic() + timeout_s
        while measure() != expected and time.monotonic() < deadline:
            time.sleep(1)
        self.wait_drained(namespace)
        return measure()


def _stat_values(text: str) -> dict[str, float]:
    """Envoy's stats text (`name: value` lines) -> the numeric ones."""
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().lstrip("-").isdigit():
            found[name] = float(value)
    return found


def binomial_bounds(count: int, share: float, sigmas: float = 4.0) -> tuple[int, int]:
    """The range a weighted random split lands in, all but about 1 run in 15,000 at 4 sigma:
    mean count*share, standard deviation sqrt(count*share*(1-share))."""
    mean, spread = count * share, math.sqrt(count * share * (1 - share))
    return max(0, math.floor(mean - sigmas * spread)), math.ceil(mean + sigmas * spread)


# -- calls from inside the mesh: a client whose sidecar applies the routing rules -------------
CALLS = """
import json, httpx
found = []
with httpx.Client(timeout=5) as client:
    for _ in range({count}):
        try:
            reply = client.get({url!r}, headers={headers!r})
            found.append([reply.status_code, reply.headers.get({instance_header!r}, "")])
        except httpx.HTTPError as err:
            found.append([0, type(err).__name__])
print(json.dumps(found))
"""


def calls_from(cluster, namespace: str, app: str, url: str, count: int, headers: dict | None = None,
               instance_header: str = "x-instance") -> list[tuple[int, str]]:
    """`count` GETs of `url` made by the app's container (so its sidecar routes them):
    (status, the pod that answered, from `instance_header`) for each."""
    code = CALLS.format(count=count, url=url, headers=headers or {}, instance_header=instance_header)
    out = cluster.exec_python(namespace, f"deploy/{app}", code, timeout_s=300)
    return [tuple(pair) for pair in json.loads(out.strip().splitlines()[-1])]


def catalog_version(instance: str) -> str:
    """Which catalog version a pod name belongs to (catalog-v2-... is v2; the others are v1)."""
    return "v2" if instance.startswith("catalog-v2-") else "v1" if instance.startswith("catalog-") else instance


def tally(calls: list[tuple[int, str]]) -> dict[str, int]:
    """How many calls each version answered; failures by status ("HTTP 503")."""
    found: dict[str, int] = {}
    for status, instance in calls:
        key = catalog_version(instance) if status == 200 else f"HTTP {status}"
        found[key] = found.get(key, 0) + 1
    return dict(sorted(found.items(), key=lambda item: (item[0].startswith("HTTP"), item[0])))


def catalog_route(v2_percent: int, abort_percent: float = 0) -> str:
    """The VirtualService the traffic panel applies: v1/v2 weights, and an injected 503 for a
    share of the calls (Envoy's fault filter answers them before any pod sees them)."""
    fault = (f"      fault:\n        abort:\n          httpStatus: 503\n          percentage: {{value: {abort_percent}}}\n"
             if abort_percent else "")
    return ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: catalog\n"
            "  labels: {app.kubernetes.io/part-of: shop}\nspec:\n  hosts: [catalog]\n  http:\n    - route:\n"
            f"        - destination: {{host: catalog, subset: v1}}\n          weight: {100 - v2_percent}\n"
            f"        - destination: {{host: catalog, subset: v2}}\n          weight: {v2_percent}\n" + fault)


class TrafficPanel:
    """Sliders for the catalog's v2 weight and an injected-fault share; Apply writes the
    VirtualService (catalog_route), waits for the proxies to take it, sends 200 calls from
    the gateway's pod and redraws what they measured. Live in JupyterLab; the book, which has
    no kernel, shows the picture of the last measurement (snapshot())."""

    CALLS = 200

    def __init__(self, mesh: Mesh, namespace: str, v2_percent: int = 20, abort_percent: int = 0) -> None:
        import ipywidgets as widgets

        self.mesh, self.namespace, self.measured = mesh, namespace, {}
        self.v2 = widgets.IntSlider(v2_percent, 0, 100, 10, description="v2 weight %")
        self.abort = widgets.IntSlider(abort_percent, 0, 50, 5, description="503 fault %")
        self.button = widgets.Button(description="Apply and measure", button_style="primary")
        self.output = widgets.Output()
        self.button.on_click(lambda _: self.apply())
        self.widget = widgets.VBox([widgets.HBox([self.v2, self.abort, self.button]), self.output])

    def _repr_mimebundle_(self, **kwargs):
        """The live panel in JupyterLab; where no widget can render (the book, which loads no
        widget manager), a sentence instead of the widget's Python repr."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = "[the traffic panel: live when this lab runs in JupyterLab]"
        return bundle

    def apply(self) -> dict[str, int]:
        import matplotlib.pyplot as plt

        cluster = self.mesh.cluster
        cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input_text=catalog_route(self.v2.value, self.abort.value))
        self.mesh.wait_synced(self.namespace)
        self.measured = tally(calls_from(cluster, self.namespace, "gateway", "http://catalog:8080/api/products/p-0001",
                                         self.CALLS))
        self.output.clear_output(wait=True)
        with self.output:
            self.snapshot()
            plt.show()
        return self.measured

    def snapshot(self):
        """The last measurement as a bar chart, against the shares the sliders asked for."""
        from . import plots

        asked = f"asked: v2 {self.v2.value} %, 503 fault {self.abort.value} %"
        return plots.bars(self.measured, f"{self.CALLS} calls from the gateway to the catalog ({asked})", unit="calls")


# -- one failure under steady load (Lab IV.3) -----------------------------------------------
GATEWAY_PRODUCT = "http://localhost:8080/api/products/p-0001"  # the gateway, from inside its own pod
LOAD = """
import json, threading, time, httpx
from concurrent.futures import ThreadPoolExecutor
client = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
start = time.monotonic()
def fault():  # the failure, at its moment on the load's own clock
    time.sleep({fault_at_s})
    if {fault_url!r}:
        httpx.put({fault_url!r}, json={fault!r}, timeout=5)
threading.Thread(target=fault, daemon=True).start()
def one(at):
    time.sleep(max(0, start + at - time.monotonic()))
    sent = time.monotonic()
    try:
        status = client.get({url!r}).status_code
    except httpx.HTTPError:
        status = 0
    return [round(sent - start, 3), round(time.monotonic() - sent, 4), status]
with ThreadPoolExecutor(64) as pool:
    found = list(pool.map(one, [i / {rate} for i in range(int({rate} * {duration_s}))]))
print(json.dumps(found))
"""
WORK_MS = 200  # each catalog call does 0.2 s of "work": the gateway then keeps several connections open


def steady_load(cluster, namespace: str, url: str, rate: float, duration_s: float, fault_url: str = "",
                fault: dict | None = None, fault_at_s: float = 0) -> list[tuple[float, float, int]]:
    """Open-loop load from inside the gateway's pod: a call every 1/rate s whatever the earlier
    ones do (a hung call does not hold the next one back, as with real users), and, at
    fault_at_s on the same clock, a PUT of `fault` to fault_url. Returns (sent at, seconds it
    took, status) for each call; status 0 is no HTTP answer."""
    code = LOAD.format(url=url, rate=rate, duration_s=duration_s, fault_url=fault_url, fault=fault or {},
                       fault_at_s=fault_at_s)
    out = cluster.exec_python(namespace, "deploy/gateway", code, timeout_s=duration_s + 60)
    return [tuple(sample) for sample in json.loads(out.strip().splitlines()[-1])]


def hang_one_catalog_pod_under_load(cluster, namespace: str, rate: float = 20, duration_s: float = 60,
                                    hang_at_s: float = 10) -> list[tuple[float, float, int]]:
    """Steady product requests through the gateway to two catalog pods that each take 0.2 s;
    at hang_at_s one of them hangs (its business calls and its liveness probe stop answering,
    its readiness probe still says yes)."""
    pods = sorted((p for p in cluster.pods(namespace, "catalog") if p.status.phase == "Running"),
                  key=lambda p: p.metadata.name)
    if len(pods) != 2:
        raise LabError(f"this experiment needs two catalog pods, found {len(pods)}",
                       f"python -m msalab kubectl -- scale deployment catalog -n {namespace} --replicas=2")
    for pod in pods:
        cluster.pod_client(namespace, pod.metadata.name).faults("catalog", latency_ms=WORK_MS)
    # The gateway keeps its connections open and a Service balances connections, not calls:
    # the pod that hangs is the one answering the gateway now, so the failure always reaches it.
    answering = [pod for _, pod in calls_from(cluster, namespace, "gateway", GATEWAY_PRODUCT, 4,
                                              instance_header="x-upstream-instance")]
    chosen = max(pods, key=lambda pod: answering.count(pod.metadata.name))
    victim = f"http://{chosen.status.pod_ip}:8080/admin/faults/catalog"
    return steady_load(cluster, namespace, GATEWAY_PRODUCT, rate, duration_s, victim, {"hang": True}, hang_at_s)


def resilience_figures(samples: list[tuple[float, float, int]], fault_at_s: float, fast_s: float = 1.0) -> dict:
    """From the fault on: the share of calls that succeeded, their p99 and slowest (all calls),
    and how long until calls were good again for good (every later call 200 within fast_s)."""
    after = sorted(s for s in samples if s[0] + s[1] >= fault_at_s)  # calls still in flight at the fault count too
    good = [s[2] == 200 and s[1] <= fast_s for s in after]
    bad_times = [s[0] for s, ok in zip(after, good) if not ok]
    latencies = sorted(s[1] for s in after)
    return {"success rate %": round(100 * sum(s[2] == 200 for s in after) / len(after), 1),
            "p99 s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
            "slowest s": round(latencies[-1], 2),
            "time to recover s": round(bad_times[-1] - fault_at_s, 1) if bad_times else 0.0}


# -- telemetry (Lab IV.5): the course's Prometheus, Jaeger and Loki next to the meshed shop --
TELEMETRY = ("prometheus", "jaeger", "loki")


def deploy_telemetry(cluster, namespace: str) -> None:
    """Prometheus (scraping the proxies), Jaeger (receiving their spans) and Loki (their access
    logs) in the namespace, from Part II's component images (the release's, or built here)."""
    from . import images
    from .cluster import manage

    if workshop_mode.namespace():  # a student's server: the images workshop up put in the cluster
        refs = {name: workshop_mode.images()[name] for name in TELEMETRY}
    else:
        refs = {name: images.component_image(name)[0] for name in TELEMETRY}
        manage.load_images(list(refs.values()))
    for name in TELEMETRY:
        cluster.apply_text(_telemetry_manifest(name).replace(f"{name.upper()}_IMAGE", refs[name]), namespace)
    for name in TELEMETRY:
        cluster.wait_rollout(namespace, name)


def _telemetry_manifest(name: str) -> str:
    """telemetry/NAME.yaml as the lab applies and deletes it: in a workshop, less what grants rights."""
    text = (MANIFESTS / "telemetry" / f"{name}.yaml").read_text()
    return _without_rbac(text) if workshop_mode.namespace() else text


def _without_rbac(text: str) -> str:
    """A manifest less its Roles and RoleBindings. In a workshop a student may not grant rights;
    the hub has given Prometheus's account the same read access to the pods of the student's
    mesh namespace (cluster/workshop/student-mesh.yaml)."""
    import re

    documents = text.split("\n---\n")
    return "\n---\n".join(d for d in documents if not re.search(r"^kind: (Role|RoleBinding)$", d, re.MULTILINE))


def remove_telemetry(cluster, namespace: str) -> None:
    for name in TELEMETRY:
        cluster.kubectl("delete", "-n", namespace, "--ignore-not-found", "-f", "-", input_text=_telemetry_manifest(name))


class LogShipper:
    """Ships the new lines of every container of the namespace's meshed pods (the proxy's and the
    app's) to the namespace's Loki, labelled with namespace, pod, container and app.

    In production a log agent on each node (a DaemonSet: Grafana Alloy, Fluent Bit, Vector) tails
    the containers' log files and does this; this one reads the same lines through the API
    (`kubectl logs --timestamps`), so that the lab shows each step, as Part II's shipper did."""

    def __init__(self, cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.loki = cluster.service_client(namespace, "loki", "http")
        self._last_ns: dict[tuple[str, str], int] = {}   # (pod, container) -> newest line shipped

    def ship(self) -> int:
        """Push the lines written since the last call; how many were pushed."""
        streams = [stream for pod in self.cluster.core.list_namespaced_pod(self.namespace).items
                   if any(c.name == PROXY for c in pod.spec.init_containers or []) for stream in self._streams(pod)]
        if not streams:
            return 0
        reply = self.loki.request("POST", "/loki/api/v1/push", json={"streams": streams})
        if reply.status != 204:
            raise LabError(f"Loki refused the push ({reply.status}): {reply.error or reply.body}",
                           f"python -m msalab kubectl -- logs -n {self.namespace} deploy/loki")
        return sum(len(stream["values"]) for stream in streams)

    def _streams(self, pod) -> list[dict]:
        app = pod.metadata.labels.get("app.kubernetes.io/name", "")
        streams = []
        for container in [PROXY] + [c.name for c in pod.spec.containers]:
            key, values = (pod.metadata.name, container), []
            # Ask only for what came after the newest line shipped (whole seconds, so a second's
            # overlap, which the timestamp comparison below drops), not the whole log every call.
            since = {"since_seconds": max(1, int(time.time() - self._last_ns[key] / 1e9) + 2)} if key in self._last_ns else {}
            text = self.cluster.core.read_namespaced_pod_log(pod.metadata.name, self.namespace, container=container,
                                                             timestamps=True, **since)
            for line in text.splitlines():
                stamp, _, entry = line.partition(" ")
                when = _rfc3339_ns(stamp)
                if when > self._last_ns.get(key, 0) and entry:
                    values.append([str(when), entry])
            if values:
                self._last_ns[key] = int(values[-1][0])
                streams.append({"stream": {"namespace": self.namespace, "pod": pod.metadata.name,
                                           "container": container, "app": app}, "values": values})
        return streams


def _rfc3339_ns(stamp: str) -> int:
    """The kubelet's RFC 3339 time with nanoseconds ("2026-12-01T10:15:02.114567891Z") in ns."""
    import datetime

    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        whole = datetime.datetime.fromisoformat(seconds).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return 0
    return int(whole.timestamp()) * 10**9 + int((fraction or "0").ljust(9, "0")[:9])


def logql(cluster, namespace: str, query: str, minutes: float = 15) -> list[dict]:
    """The lines a LogQL query selects in the namespace's Loki over the last `minutes`, oldest
    first: [{"labels": {...}, "line": str}]."""
    now = time.time_ns()
    reply = cluster.service_client(namespace, "loki", "http").request(
        "GET", "/loki/api/v1/query_range",
        params={"query": query, "start": now - int(minutes * 60e9), "end": now, "limit": 1000, "direction": "forward"})
    if reply.status != 200:
        raise LabError(f"Loki answered {reply.status} to {query!r}: {reply.error or reply.body}",
                       f"python -m msalab kubectl -- logs -n {namespace} deploy/loki")
    found = [(int(stamp), stream["stream"], line) for stream in reply.body["data"]["result"]
             for stamp, line in stream["values"]]
    return [{"labels": labels, "line": line} for _, labels, line in sorted(found, key=lambda entry: entry[0])]


def access_log_fields(line: str) -> dict:
    """The fields of one line in Istio's default access-log format that the labs read."""
    import re

    quoted = re.findall(r'"([^"]*)"', line)
    head = re.match(r'\[(\S+)\] "[^"]*" (\d+) (\S+)', line)
    if not head or len(quoted) < 7:
        return {}
    after_quotes = line.rsplit('"', 1)[1].split()   # the upstream cluster, addresses, SNI, route
    return {"start": head.group(1), "request": quoted[0], "status": int(head.group(2)), "flags": head.group(3),
            "request_id": quoted[4], "authority": quoted[5], "upstream_host": quoted[6],
            "cluster": after_quotes[0] if after_quotes else ""}


def promql(cluster, namespace: str, query: str) -> list[dict]:
    """An instant PromQL query to the namespace's Prometheus: [{"metric": {...}, "value": float}]."""
    reply = cluster.service_client(namespace, "prometheus", "http").request("GET", "/api/v1/query", params={"query": query})
    if reply.status != 200:
        raise LabError(f"Prometheus answered {reply.status} to {query!r}: {reply.error or reply.body}",
                       f"python -m msalab kubectl -- logs -n {namespace} deploy/prometheus")
    return [{"metric": r["metric"], "value": float(r["value"][1])} for r in reply.body["data"]["result"]]


def trace(cluster, namespace: str, trace_id: str) -> list[dict]:
    """One trace's spans from Jaeger's query API: service, operation, start (µs), duration (µs), kind."""
    reply = cluster.service_client(namespace, "jaeger", "http-query").request("GET", f"/api/traces/{trace_id}")
    if reply.status != 200 or not reply.body.get("data"):
        return []
    found = reply.body["data"][0]
    services = {pid: process["serviceName"] for pid, process in found["processes"].items()}
    return sorted(({"service": services[span["processID"]], "operation": span["operationName"],
                    "start_us": span["startTime"], "duration_us": span["duration"],
                    "kind": next((tag["value"] for tag in span["tags"] if tag["key"] == "span.kind"), "")}
                   for span in found["spans"]), key=lambda span: span["start_us"])


# -- what the proxies cost (Lab IV.7, make bench) ---------------------------------------------
PROXY_CONTAINERS = ("istio-proxy", "envoy")


def proxy_usage(cluster, namespace: str) -> dict[str, tuple[float, float, float]]:
    """Each proxy container of the namespace ("pod/container") -> (CPU seconds used so far,
    when cAdvisor read it, working-set MiB), from the kubelet's cAdvisor."""
    from . import promtext

    text = cluster.kubelet_metrics("metrics/cadvisor")
    found = {}
    for container in PROXY_CONTAINERS:
        memory = {labels["pod"]: value for labels, value, _ in
                  promtext.points(text, "container_memory_working_set_bytes", namespace=namespace, container=container)}
        for labels, value, stamp in promtext.points(text, "container_cpu_usage_seconds_total", namespace=namespace,
                                                    container=container):
            found[f"{labels['pod']}/{container}"] = (value, stamp, memory.get(labels["pod"], 0.0) / 2**20)
    return found


def cost_of_calls(cluster, namespace: str, url: str, rate: float = 100, seconds: float = 30) -> dict:
    """Calls from the gateway's pod to `url` at `rate` per second: their latency, and the CPU
    (scaled to 1,000 calls a second) and memory of every proxy they passed."""
    import time

    # A new pod answers a moment after it is ready: kube-proxy (and, in a workshop, the network
    # policy enforcer) add its rules after they see it. Measure the path once it answers.
    cluster.wait_until(lambda: all(status == 200 for status, _ in calls_from(cluster, namespace, "gateway", url, 5)),
                       f"{url} to answer the gateway's calls", 60, every_s=2)
    before = proxy_usage(cluster, namespace)
    samples = steady_load(cluster, namespace, url, rate, seconds)
    time.sleep(16)  # cAdvisor reads the cgroups every 10-15 s: let it read them after the load
    after = proxy_usage(cluster, namespace)
    cores = sum((after[k][0] - before[k][0]) / (after[k][1] - before[k][1]) for k in after
                if k in before and after[k][1] and before[k][1] and after[k][1] > before[k][1])
    # The proxies' CPU spans the load and the quiet seconds around it: scale by the load's share.
    window = max((after[k][1] - before[k][1] for k in after if k in before and after[k][1] and before[k][1]), default=seconds)
    busy_cores = cores * window / seconds
    ok = sorted(s[1] for s in samples if s[2] == 200)
    return {"calls ok %": round(100 * len(ok) / len(samples), 1),
            "p50 ms": round(1000 * ok[len(ok) // 2], 2), "p99 ms": round(1000 * ok[int(0.99 * (len(ok) - 1))], 2),
            "proxy CPU per 1000 calls/s (cores)": round(busy_cores * 1000 / rate, 3),
            "proxy memory MiB": round(sum(v[2] for v in after.values()), 1), "proxies passed": len(after)}


def gateway_and_catalog(cluster, namespace: str, mesh: "Mesh | None" = None) -> str:
    """Only the two services a product call passes (the gateway, where loads run, and the
    catalog) in a fresh namespace: in the mesh when `mesh` is given. Returns the namespace's name
    (in a workshop, the student's own namespace, not `namespace`)."""
    namespace = (mesh.meshed_namespace if mesh else cluster.fresh_namespace)(namespace)
    cluster.ensure_service_key(namespace)
    for service in ("catalog", "gateway"):
        cluster.apply(paths.REPO / "cluster" / "shop" / f"{service}.yaml", namespace)
        cluster.wait_rollout(namespace, service)
    return namespace


def push_seconds(cluster, mesh: Mesh, namespace: str, count: int, timeout_s: float = 300) -> float:
    """Create `count` Services at once in a meshed namespace; the seconds until the gateway's
    proxy has a cluster for every one of them (istiod noticed, computed and pushed, and the
    proxy acknowledged)."""
    import time

    names = [f"bench-svc-{i:03d}" for i in range(count)]
    services = "\n---\n".join(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, labels: {{app.kubernetes.io/part-of: msalab-bench}}}}\n"
        f"spec: {{selector: {{app.kubernetes.io/name: {name}}}, ports: [{{name: http, port: 8080}}]}}" for name in names)
    started = time.monotonic()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=services)

    def pushed() -> bool:
        clusters = mesh.proxy_config("clusters", namespace, "gateway", "-o", "json")
        return sum(f"||{name}.{namespace}.svc.cluster.local" in clusters for name in names) == count

    cluster.wait_until(pushed, f"the gateway's proxy to receive {count} new services", timeout_s, every_s=0.2)
    elapsed = time.monotonic() - started
    cluster.kubectl("delete", "services", "-n", namespace, "-l", "app.kubernetes.io/part-of=msalab-bench")
    return elapsed
