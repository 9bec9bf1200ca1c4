"""Solutions to Lab IV.6's broken meshes. Open this file when you are stuck, after trying:
each function is what a fix looks like, written with the lab's own helpers.
(make test runs them, with MSALAB_SOLVE set, so that CI can run the lab end to end.)"""

from msalab.k8s import SHOP_SERVICES


def injection_off(cluster, namespace, **_):
    # Injection happens when a pod is created: label the namespace, then re-create the pods.
    cluster.kubectl("label", "namespace", namespace, "istio-injection=enabled", "--overwrite")
    cluster.kubectl("rollout", "restart", "deployment", "-n", namespace)
    for service in SHOP_SERVICES:
        cluster.wait_rollout(namespace, service)


def subset_without_pods(cluster, namespace, **_):
    # The v2 pods are labelled version: v2; the subset asked for version "2".
    cluster.kubectl("patch", "destinationrule", "catalog", "-n", namespace, "--type=json", "-p",
                    '[{"op": "replace", "path": "/spec/subsets/1/labels/version", "value": "v2"}]')


def host_typo(cluster, namespace, **_):
    # The route's destination must be a host the mesh knows: the inventory Service.
    cluster.kubectl("patch", "virtualservice", "inventory", "-n", namespace, "--type=json", "-p",
                    '[{"op": "replace", "path": "/spec/http/0/route/0/destination/host", "value": "inventory"}]')


GATEWAY_PERMISSIVE = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: gateway-accepts-outside-clients
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: gateway}
  mtls:
    mode: PERMISSIVE
"""


def strict_facing_outside_client(cluster, namespace, **_):
    # The client (the API server's proxy) cannot join the mesh: let the gateway, and only the
    # gateway, accept plaintext; every other service stays STRICT.
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=GATEWAY_PERMISSIVE)
