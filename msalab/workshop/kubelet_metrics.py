"""The kubelet's metrics for a workshop's students: each sees the series of their own pods only.

Labs III.6 and IV.7 read cAdvisor's per-pod series from the kubelet. The course reads them
through the API server's node proxy, but that right (nodes/proxy) reaches every pod on the
node: no student may hold it. This service holds the narrow right metrics-server holds instead
(nodes/metrics, the kubelet's /metrics paths only), in its own pod and account, and answers

    GET /nodes/NODE/metrics/cadvisor   (or metrics/resource)
    Authorization: Bearer <a token of the student's ServiceAccount, for this service's audience>

with the kubelet's text, keeping only the samples whose `namespace` label names a namespace
where that account may list pods (a SubjectAccessReview), and the # HELP / # TYPE lines. So it
adds no rule of its own: a student sees the metrics of the pods RBAC already shows them.

The token it takes is one the hub mints for the audience msalab-kubelet-metrics alone
(jupyterhub_config.py): it reaches this service in plain HTTP, and one taken on the way is of
no use at the API server. One read of a kubelet serves every student for a few seconds (cAdvisor
measures every 10-15 s anyway), so a room polling at once costs the kubelet one read.

It runs in the hub's image (python3 -m kubelet_metrics), with the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PATH = re.compile(r"^/nodes/([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)/(metrics/cadvisor|metrics/resource)$")
# A sample's namespace label. Inside a label value every '"' is escaped, so '{namespace="' or
# ',namespace="' can only start the label itself, never appear within another's value.
NAMESPACE_LABEL = re.compile(r'[{,]\s*namespace\s*=\s*"((?:[^"\\]|\\.)*)"')
PORT = 10102  # hub.yaml's Service kubelet-metrics (the hub's config reads both from here)
AUDIENCE = "msalab-kubelet-metrics"  # the tokens the hub mints for it (jupyterhub_config.py)
REVIEW_S = 30  # how long the API server's answer about a token or a namespace is reused
KUBELET_S = 5  # how long one read of a kubelet serves every request


def visible(text: str, may_read) -> str:
    """The kubelet's Prometheus text with only the samples of namespaces `may_read(namespace)`
    allows; comments stay (they describe metrics, not pods), and samples with no namespace
    (the node's own cgroups) go."""
    allowed: dict[str, bool] = {}  # asked once per namespace per answer
    kept = []
    for line in text.split("\n"):  # Prometheus ends lines with \n alone; a label value may hold \r
        if line.startswith("#") or not line.strip():
            kept.append(line)
            continue
        found = NAMESPACE_LABEL.search(line)
        namespace = found.group(1) if found else ""
        if namespace not in allowed:  # namespace="" (the node's own cgroups) is no namespace: never shown
            allowed[namespace] = bool(namespace) and may_read(namespace)
        if allowed[namespace]:
            kept.append(line)
    return "\n".join(kept).rstrip("\n") + "\n"


class Cache:
    """Answers by key, each for `seconds`: a room of labs polling every 2 s must cost the API
    server and the kubelet a few requests, not one per student per poll."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._found: dict = {}
        self._lock = threading.Lock()

    def get(self, key, compute):
        now = time.monotonic()
        with self._lock:
            hit = self._found.get(key)
            if hit and now - hit[0] < self.seconds:
                return hit[1]
        value = compute()
        with self._lock:
            self._found = {k: v for k, v in self._found.items() if now - v[0] < self.seconds}
            self._found[key] = (now, value)
        return value


class Kubernetes:
    """The API server and the kubelets, as this service's own account."""

    def __init__(self) -> None:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.api = f"https://{_bracketed(host)}:{port}"
        self.verified = ssl.create_default_context(cafile=str(ACCOUNT / "ca.crt"))
        # The kubelet's serving certificate is self-signed on both course clusters (kubeadm's
        # default), so, as metrics-server (--kubelet-insecure-tls), this does not verify it. What
        # crosses that connection is this account's token, which reads the kubelets' metrics (every
        # pod's) and nothing else.
        self.unverified = ssl.create_default_context()
        self.unverified.check_hostname, self.unverified.verify_mode = False, ssl.CERT_NONE

    def _token(self) -> str:
        return (ACCOUNT / "token").read_text().strip()  # re-read: the kubelet rotates it

    def _call(self, url: str, context: ssl.SSLContext, body: dict | None = None) -> bytes:
        request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                         headers={"Authorization": f"Bearer {self._token()}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context, timeout=20) as answer:
            return answer.read()

    def api_call(self, path: str, body: dict | None = None) -> dict:
        return json.loads(self._call(self.api + path, self.verified, body))

    def user(self, token: str) -> dict | None:
        """Whose token this is (a TokenReview), or None when the API server does not accept it."""
        review = self.api_call("/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": [AUDIENCE]}})
        status = review.get("status", {})
        accepted = status.get("authenticated") and AUDIENCE in status.get("audiences", [])
        return status.get("user") if accepted else None

    def may_list_pods(self, user: dict, namespace: str) -> bool:
        review = self.api_call("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user.get("username"), "uid": user.get("uid"), "groups": user.get("groups", []),
                     "extra": user.get("extra", {}),
                     "resourceAttributes": {"namespace": namespace, "verb": "list", "resource": "pods"}}})
        return bool(review.get("status", {}).get("allowed"))

    def kubelet(self, node: str, path: str) -> str:
        """The node's kubelet, directly (not through the API server's node proxy)."""
        status = self.api_call(f"/api/v1/nodes/{node}")["status"]
        addresses = {a["type"]: a["address"] for a in status["addresses"]}
        address = addresses.get("InternalIP") or addresses["Hostname"]  # as metrics-server prefers here
        port = status.get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port", 10250)
        try:
            return self._call(f"https://{_bracketed(address)}:{port}/{path}", self.unverified).decode()
        except urllib.error.HTTPError as err:
            raise KubeletError(f"the kubelet of {node} answered {err.code}: {err.reason}") from None


class KubeletError(Exception):
    pass


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Handler(BaseHTTPRequestHandler):
    kubernetes: Kubernetes
    users = Cache(REVIEW_S)
    reviews = Cache(REVIEW_S)
    kubelets = Cache(KUBELET_S)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            return self._answer(200, "ok\n", "text/plain")
        route = PATH.match(self.path)
        if not route:
            return self._error(404, "ask for /nodes/NODE/metrics/cadvisor or /nodes/NODE/metrics/resource")
        token = self.headers.get("Authorization", "")
        if not token.lower().startswith("bearer ") or not token[7:].strip():
            return self._error(401, "no token: send Authorization: Bearer TOKEN, a token of your ServiceAccount "
                                    f"for the audience {AUDIENCE} (in a student's server: "
                                    "/var/run/secrets/msalab-workshop/kubelet-metrics-token)")
        token = token[7:].strip()
        try:
            user = self.users.get(hashlib.sha256(token.encode()).hexdigest(), lambda: self.kubernetes.user(token))
            if user is None:
                return self._error(401, f"the API server does not accept this token for {AUDIENCE} (restart your "
                                        "server from the hub's home page for a fresh one)")
            node, path = route.group(1), route.group(3)
            text = self.kubelets.get((node, path), lambda: self.kubernetes.kubelet(node, path))
            shown = visible(text, lambda ns: self.reviews.get(
                (user.get("username"), ns), lambda: self.kubernetes.may_list_pods(user, ns)))
        except urllib.error.HTTPError as err:  # the API server's
            if err.code == 404:
                return self._error(404, f"no node {route.group(1)}: kubectl get nodes")
            return self._error(502, f"the API server answered {err.code}: {err.reason}")
        except Exception as err:  # the kubelet's answer, a connection, a malformed reply: say which
            return self._error(502, f"could not read the kubelet: {type(err).__name__}: {err}")
        self._answer(200, shown, "text/plain; version=0.0.4")

    def _error(self, status: int, message: str) -> None:
        if status >= 500:
            print(f"error: {message}", flush=True)  # for the instructor (kubectl logs deploy/kubelet-metrics)
        self._answer(status, json.dumps({"error": message}) + "\n", "application/json")

    def _answer(self, status: int, body: str, kind: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:  # one line per request, without the token
        if self.path != "/healthz":  # the readiness probe's, every 2 s, would bury the rest
            print(f"{self.address_string()} {fmt % args}", flush=True)


def main() -> None:
    Handler.kubernetes = Kubernetes()
    ThreadingHTTPServer(("", PORT), Handler).serve_forever()


if __name__ == "__main__":
    main()
