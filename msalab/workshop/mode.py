"""msalab inside a student's server of a workshop (python -m msalab workshop up).

The hub starts each server with MSALAB_WORKSHOP_NAMESPACE: the student's own namespace. There
the labs' cluster is the workshop's, reached as the server's ServiceAccount, and every
namespace a lab asks for is that one namespace (k8s.Cluster.fresh_namespace), so Part III's
labs run unchanged, each starting from an emptied namespace. Where the mesh was installed
before `workshop up`, the student also has a namespace inside it (MSALAB_WORKSHOP_MESH_NAMESPACE):
every namespace a Part IV lab puts in the mesh (msalab.mesh.Mesh.meshed_namespace) is that one.
Parts I and II run inside the server itself: the shop as processes, Part II's components as
processes too (msalab.componentprocs).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import paths
from ..errors import LabError

# The student's account's token and the cluster's CA, mounted by the hub (jupyterhub_config.py).
ACCOUNT = Path("/var/run/secrets/msalab-workshop")
# What a lab may create in the namespace, emptied between labs. Not the workshop's boundaries
# (quota, limits, network policy, role binding), which the student cannot delete anyway.
LAB_KINDS = ("deployments", "statefulsets", "replicasets", "jobs", "cronjobs", "horizontalpodautoscalers",
             "poddisruptionbudgets", "services", "ingresses", "configmaps", "secrets")
# Custom kinds the labs create (= the msalab-workshop-student ClusterRole's), where installed.
LAB_CUSTOM_KINDS = ("httproutes.gateway.networking.k8s.io", "virtualservices.networking.istio.io",
                    "destinationrules.networking.istio.io", "gateways.networking.istio.io", "serviceentries.networking.istio.io",
                    "sidecars.networking.istio.io", "peerauthentications.security.istio.io",
                    "authorizationpolicies.security.istio.io", "requestauthentications.security.istio.io",
                    "telemetries.telemetry.istio.io")


ISTIO_CONFIGMAPS = "configmap/istio-ca-"  # istio-ca-root-cert, istio-ca-crl


def namespace() -> str | None:
    return os.environ.get("MSALAB_WORKSHOP_NAMESPACE") or None


def mesh_namespace() -> str | None:
    """The student's namespace inside the mesh (labelled for injection), where the workshop has one."""
    return os.environ.get("MSALAB_WORKSHOP_MESH_NAMESPACE") or None if namespace() else None


def images() -> dict[str, str]:
    """The images `workshop up` put in the cluster for the labs' components (Lab IV.5's Prometheus,
    Jaeger and Loki), by name: a student's server can neither build nor load one."""
    import json

    found = json.loads(os.environ.get("MSALAB_WORKSHOP_IMAGES") or "{}")
    if not found:
        raise LabError("this workshop put no images for the labs' components in the cluster: the mesh was not "
                       "installed when it started", "ask the instructor (the instructors' guide: Part IV)")
    return found


def lab_namespace(name: str) -> str:
    """Which of the student's namespaces a lab's namespace is: the mesh's where it is that one
    (Mesh.meshed_namespace returned it), else the student's own."""
    return name if name == mesh_namespace() else namespace()


def node_address() -> str | None:
    """The node's address (the hub passes it), where the course cluster's Ingress and Gateway
    ports answer pods as they answer 127.0.0.1 on the host."""
    return os.environ.get("MSALAB_WORKSHOP_NODE_ADDRESS") or None if namespace() else None


def kubelet_metrics(node: str, path: str) -> str:
    """The kubelet's metrics of the student's own pods, from the workshop's kubelet-metrics service
    (msalab/workshop/kubelet_metrics.py): a student may not read the kubelet through the node's
    proxy, a right that reaches every pod on the node. It takes the token the hub minted for it."""
    import urllib.error
    import urllib.request

    url, token = os.environ.get("MSALAB_KUBELET_METRICS_URL"), ACCOUNT / "kubelet-metrics-token"
    if not url or not token.exists():
        raise LabError("this server was started without the workshop's kubelet-metrics service (an older workshop)",
                       "ask the instructor to run python -m msalab workshop up again, then restart your server from "
                       "the hub's home page")
    request = urllib.request.Request(f"{url.rstrip('/')}/nodes/{node}/{path}",
                                     headers={"Authorization": f"Bearer {token.read_text().strip()}"})
    logs = f"python -m msalab kubectl -- logs -n {paths.versions()['workshop']['namespace']} deploy/kubelet-metrics"
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace").strip()
        fix = "restart your server from the hub's home page (a fresh token)" if err.code == 401 else \
            f"run the step again; if it persists, the instructor reads {logs}"
        raise LabError(f"the workshop's kubelet-metrics service answered {err.code}: {detail}", fix) from None
    except (urllib.error.URLError, OSError) as err:
        raise LabError(f"the workshop's kubelet-metrics service did not answer ({err})",
                       f"the instructor reads {logs}") from None


def kubeconfig() -> str:
    """A kubeconfig for the student's ServiceAccount (written each time: a restarted server
    has a new token), in the student's home."""
    if not (ACCOUNT / "token").exists():
        raise LabError("this server has no ServiceAccount token (MSALAB_WORKSHOP_NAMESPACE is set outside a workshop?)",
                       "unset MSALAB_WORKSHOP_NAMESPACE, or ask the instructor to restart your server")
    server = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
    path = Path.home() / ".kube" / "workshop.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: workshop, cluster: {{server: "{server}", certificate-authority: {ACCOUNT / 'ca.crt'}}}}}]
users: [{{name: student, user: {{token: "{(ACCOUNT / 'token').read_text().strip()}"}}}}]
contexts: [{{name: workshop, context: {{cluster: workshop, user: student, namespace: {namespace()}}}}}]
current-context: workshop
""")
    path.chmod(0o600)
    return str(path)


def kubectl_command() -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise LabError("kubectl is not in this server's image", "ask the instructor: python -m msalab workshop up rebuilds it")
    return [kubectl, f"--kubeconfig={kubeconfig()}"]


# The accounts labs make (Lab IV.5's Prometheus): not the namespace's default one, nor the
# workshop's own (the student's, which the server acts as).
LAB_ACCOUNTS = ("-l", "app.kubernetes.io/part-of!=msalab-workshop",
                "--field-selector=metadata.name!=default,metadata.name!=student")


def _lab_kinds(kubectl) -> list[str]:
    available = kubectl("api-resources", "--namespaced", "-o", "name", check=False).split()
    return [*LAB_KINDS, *(kind for kind in LAB_CUSTOM_KINDS if kind in available)]


def lab_objects(kubectl, ns: str | None = None) -> list[str]:
    """What labs made in one of the student's namespaces (their own by default) and is still there."""
    ns = ns or namespace()
    found = kubectl("get", ",".join(_lab_kinds(kubectl)), "-n", ns, "-o", "name",
                    "--field-selector=metadata.name!=kube-root-ca.crt").split()
    found += kubectl("get", "pods", "-n", ns, "-o", "name").split()
    found += kubectl("get", "serviceaccounts", "-n", ns, "-o", "name", *LAB_ACCOUNTS).split()
    # Istio writes its root certificate (and its revocation list) into every namespace: the
    # mesh's, not a lab's.
    return [name for name in found if not name.startswith(ISTIO_CONFIGMAPS)]


def empty_namespace(kubectl, ns: str | None = None) -> None:
    """Remove what earlier labs created in one of the student's namespaces (their own by
    default), keeping the server itself (in the hub's namespace) and the mesh's root certificate.
    kubectl: the Cluster's kubectl method."""
    ns = ns or namespace()
    kubectl("delete", ",".join(_lab_kinds(kubectl)), "-n", ns,
            "--field-selector=metadata.name!=kube-root-ca.crt,metadata.name!=istio-ca-root-cert",
            "--ignore-not-found", "--wait=true", "--timeout=120s")
    kubectl("delete", "pods", "--all", "-n", ns, "--ignore-not-found",
            "--wait=true", "--timeout=120s", "--grace-period=1")
    kubectl("delete", "serviceaccounts", "-n", ns, *LAB_ACCOUNTS, "--ignore-not-found")
