"""NetworkPolicy, really enforced on the course cluster: its static bridge CNI enforces none.

kube-network-policies (Kubernetes SIG Network; kindnetd embeds it), the pinned enforcer, runs
as a DaemonSet on the host network. It keeps one nftables table (inet kube-network-policies)
that sends the first packet of each new connection to or from a pod that a policy selects to
an NFQUEUE; the program reads the queue, evaluates the policies, accepts or drops the packet.

Its rules need the kernel's nftables `queue` expression (CONFIG_NFT_QUEUE, the nft_queue
module). Where the kernel lacks it (this course's own build machines: their kernel has the
iptables NFQUEUE target but not nft_queue), kube-router's firewall alone (iptables and ipset)
enforces the policies instead. backend() tells which one this machine gets.

    cluster = k8s.Cluster()
    netpol.install(cluster)      # build (cached), load, apply, wait until enforcing
    netpol.uninstall(cluster)    # delete, wait, check the host has nothing of it left
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import yaml

from .. import engine, images, paths
from ..cluster import gobuild, manage
from ..cluster.policyrules import KUBE_ROUTER_CLEANUP, remove_leftovers, table_present
from ..errors import LabError

KNP, KUBE_ROUTER = "kube-network-policies", "kube-router"
NAMESPACE = "kube-system"
PART_OF = {"app.kubernetes.io/part-of": "msalab-workshop"}
# The fallback's pins (versions.yaml workshop.network_policies.fallback).
KUBE_ROUTER_PIN = paths.versions()["workshop"]["network_policies"]["fallback"]

# -- kube-network-policies' settings ------------------------------------------------------------
QUEUE_ID = 98  # what upstream's install.yaml uses without AdminNetworkPolicy
# It serves metrics on :9080 by default, on the host network that is every address: 9080 is a
# Part II component's port (versions.yaml components), so loopback and a free port.
METRICS_ADDRESS = "127.0.0.1:10331"
# cmd/main.go cancels its context (and so deletes its table) on SIGINT only; SIGTERM, which the
# kubelet sends unless the image says otherwise, kills it at once and leaves the table behind,
# its queue without a reader: new connections of the pods it lists are then dropped.
KNP_DOCKERFILE = f"FROM scratch\nCOPY {KNP} /bin/{KNP}\nSTOPSIGNAL SIGINT\nENTRYPOINT [\"/bin/{KNP}\"]\n"

KUBE_ROUTER_RUN = 'kube-router "$@" & pid=$!\ntrap \'kill -TERM "$pid"\' TERM INT\nwait "$pid"; wait "$pid"\n'


def spec() -> dict:
    return paths.versions()["workshop"]["network_policies"]


def _pin(which: str) -> dict:
    return spec() if which == KNP else KUBE_ROUTER_PIN


# -- which enforcer ------------------------------------------------------------------------------
def kernel_has_nft_queue() -> bool:
    """Whether nftables can queue packets here: a dry run (nft -c) of a rule with `queue`.
    Where it cannot be asked (not Linux, no nft, not root: a learner's Docker Desktop, say),
    assume a stock kernel, where nft_queue is a module that loads when first used."""
    if platform.system() != "Linux" or shutil.which("nft") is None or os.geteuid() != 0:
        return True
    probe = "table inet msalab-probe { chain c { type filter hook postrouting priority 0; queue num 0; } }"
    return subprocess.run(["nft", "-c", "-f", "-"], input=probe, capture_output=True, text=True).returncode == 0


def backend() -> str:
    """kube-network-policies where the kernel can queue from nftables, kube-router where not
    (kind's nodes share the host's kernel, so this holds for both providers)."""
    return KNP if kernel_has_nft_queue() else KUBE_ROUTER


# -- build -----------------------------------------------------------------------------------------
def build_binary(which: str | None = None) -> Path:
    """Static (gobuild builds with CGO_ENABLED=0), cached by version like the cluster's binaries."""
    which = which or backend()
    pin = _pin(which)
    if not gobuild.is_built(which, pin["version"]):
        gobuild.require_go(other_way="")
    if which == KNP:
        # Its main package is the module's cmd/: `go install` would name the binary `cmd`, so it
        # is built inside the module, which names it.
        return gobuild.build_in_module(KNP, pin["module"], pin["version"], "cmd") / KNP
    version_flag = f"-X {pin['module']}/pkg/version.Version={pin['version']}"
    return gobuild.go_install(KUBE_ROUTER, f"{pin['module']}/cmd/kube-router", pin["version"],
                              ldflags=version_flag) / KUBE_ROUTER


def build_image(which: str | None = None) -> str:
    """The enforcer's image, built here (skipped when present). kube-network-policies: FROM
    scratch, under upstream's name (which the manifest names). kube-router runs the iptables and
    ipset commands: Debian with those two (debootstrap, as the course's other bases)."""
    which = which or backend()
    image = _pin(which)["image"]
    if engine.image_present(image):
        return image
    if which == KNP:
        engine.build_small_image(image, {KNP: build_binary(KNP)}, KNP_DOCKERFILE)
    else:
        engine.build_small_image(image, {KUBE_ROUTER: build_binary(KUBE_ROUTER)},
                                 f"FROM {_kube_router_base()}\nCOPY kube-router /usr/local/bin/kube-router\n"
                                 "ENTRYPOINT [\"/usr/local/bin/kube-router\"]\n")
    return image


def _kube_router_base() -> str:
    rootfs = images.debootstrap(KUBE_ROUTER_PIN["suite"], KUBE_ROUTER_PIN["packages"])
    ref = f"msalab/kube-router-base:{rootfs.name}"
    if not engine.image_present(ref):
        images.import_rootfs(rootfs, ref, '["/bin/sh"]')
    return ref


# -- manifest ----------------------------------------------------------------------------------------
def _labels(which: str) -> dict:
    return {"app.kubernetes.io/name": which, **PART_OF}


def _meta(which: str, namespaced: bool = True) -> dict:
    return {"name": which, **({"namespace": NAMESPACE} if namespaced else {}), "labels": _labels(which)}


def _rules(which: str) -> list[dict]:
    """What each lists and watches. kube-network-policies with AdminNetworkPolicy off: pods,
    namespaces, NetworkPolicies (its install.yaml; install-anp.yaml adds nodes and the
    policy.networking.k8s.io kinds, watched only with those flags; its event recorder never
    records). kube-router starts every informer it makes, whichever controllers run, and reads
    its Node (generic-kuberouter.yaml, less the router's leases and the proxy's services/status)."""
    read = ["list", "watch"] if which == KNP else ["get", "list", "watch"]
    core = ["pods", "namespaces"] if which == KNP else ["pods", "namespaces", "nodes", "services", "endpoints"]
    rules = [{"apiGroups": [""], "resources": core, "verbs": read},
             {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": read}]
    if which == KUBE_ROUTER:
        rules.append({"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read})
    return rules


def _rbac(which: str) -> list[dict]:
    subject = {"kind": "ServiceAccount", "name": which, "namespace": NAMESPACE}
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(which)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(which, False),
             "rules": _rules(which)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": _meta(which, False), "subjects": [subject],
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": which}}]


def _security_context(which: str) -> dict:
    # Not privileged (upstream's manifests are): that needs every capability and fails where
    # processes lack CAP_SYS_RESOURCE. NET_ADMIN for nftables, iptables, ipset and the NFQUEUE
    # netlink socket; kube-router also NET_RAW: iptables' `-m set` match asks the kernel about
    # ipsets through a raw socket ("Can't open socket to ipset" without it). Root, because a
    # container's added capabilities reach only a root process (no ambient capabilities).
    added = ["NET_ADMIN"] if which == KNP else ["NET_ADMIN", "NET_RAW"]
    return {"privileged": False, "runAsUser": 0, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "seccompProfile": {"type": "RuntimeDefault"}, "capabilities": {"drop": ["ALL"], "add": added}}


def _args(which: str) -> list[str]:
    if which == KNP:
        # The node's name, not the host's: it enforces only for pods scheduled to its node.
        # AdminNetworkPolicy and BaselineAdminNetworkPolicy stay off (the default): the cluster
        # has no CRDs for them. (v0.8.0 ignores --disable-nri: NRI is tried, fails, and the
        # pods' addresses come from the API server.) --v=2 would log every packet.
        return ["--hostname-override=$(NODE_NAME)", f"--nfqueue-id={QUEUE_ID}",
                f"--metrics-bind-address={METRICS_ADDRESS}", "--v=1"]
    service_cidr = paths.versions()["cluster"]["network"]["service_cidr"]
    return ["--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
            f"--service-cluster-ip-range={service_cidr}", "--hostname-override=$(NODE_NAME)", "--v=1"]


def _container(which: str) -> dict:
    container = {
        "name": which, "image": _pin(which)["image"],
        "imagePullPolicy": "Never",  # built here and loaded; upstream's image of the same tag differs
        "args": _args(which),
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "resources": {"requests": {"cpu": "50m", "memory": "50Mi"}},
        "securityContext": _security_context(which),
    }
    if which == KUBE_ROUTER:
        # `sh -c SCRIPT NAME ARGS...`: the args reach kube-router as "$@".
        container["command"] = ["/bin/sh", "-c", KUBE_ROUTER_RUN + KUBE_ROUTER_CLEANUP, "kube-router-netpol"]
        container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 20244}, "initialDelaySeconds": 10,
                                      "periodSeconds": 10}
    return container


def _daemonset(which: str) -> dict:
    pod = {"serviceAccountName": which,
           # Its rules filter the node's own network stack, so it runs in the node's network namespace.
           "hostNetwork": True,
           "priorityClassName": "system-node-critical",  # a node without it enforces nothing
           # Every NoSchedule taint, the control plane's too (as upstream): one on every node.
           "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
           "nodeSelector": {"kubernetes.io/os": "linux"},
           "containers": [_container(which)]}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta(which),
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": which}},
                     "template": {"metadata": {"labels": _labels(which)}, "spec": pod}}}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (kube-router's script) as literal blocks, readable in the manifest."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def manifest(which: str | None = None) -> str:
    """ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet, for `kubectl apply -f -`."""
    which = which or backend()
    return yaml.dump_all([*_rbac(which), _daemonset(which)], Dumper=_Dumper, sort_keys=False)


# -- what each leaves on the host ---------------------------------------------------------------
def _on_this_host() -> bool:
    """The offline cluster's node is this machine; kind's is a container with its own tables."""
    return manage.current_provider() == "offline"


def enforcing(which: str) -> bool:
    """Its rules are on this host: only then are policies enforced."""
    from ..cluster import netfilter

    return table_present() if which == KNP else ":KUBE-ROUTER-FORWARD " in netfilter.dump("ipv4")


# -- install / uninstall ------------------------------------------------------------------------------
def _pods(cluster) -> list[str]:
    return cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/name in ({KNP},{KUBE_ROUTER})",
                           "-o", "name").split()


def _ready(cluster, which: str) -> bool:
    found = cluster.kubectl("get", "daemonset", which, "-n", NAMESPACE, "-o", "json", "--ignore-not-found")
    status = json.loads(found).get("status", {}) if found.strip() else {}
    wanted = status.get("desiredNumberScheduled", 0)
    return wanted > 0 and status.get("numberReady", 0) == wanted and status.get("updatedNumberScheduled", 0) == wanted


def is_installed(cluster) -> bool:
    """An enforcer's DaemonSet exists and every pod it wants is ready."""
    return _ready(cluster, KNP) or _ready(cluster, KUBE_ROUTER)


def install(cluster, which: str | None = None) -> str:
    """Build its image (cached), load it into the cluster's runtime, apply, wait until it runs
    and, on this host, until its rules are there. Returns which enforcer it is."""
    which = which or backend()
    if which == KNP and not kernel_has_nft_queue():
        raise LabError("this kernel has no nftables `queue` expression (CONFIG_NFT_QUEUE, the nft_queue module): "
                       "kube-network-policies' rules cannot be loaded here",
                       "netpol.install(cluster) without naming an enforcer: kube-router's firewall then enforces")
    if which == KUBE_ROUTER:
        version = KUBE_ROUTER_PIN["version"]
        print(f"[netpol] kube-router {version}'s firewall enforces NetworkPolicy here (security flaws are reported "
              f"for {version}; kube-network-policies needs nftables' queue, which this kernel lacks)", flush=True)
    image = build_image(which)
    manage.load_images([image])
    cluster.kubectl("apply", "-f", "-", input_text=manifest(which))
    try:
        cluster.kubectl("rollout", "status", f"daemonset/{which}", "-n", NAMESPACE, "--timeout=120s")
        if _on_this_host():
            cluster.wait_until(lambda: enforcing(which), f"{which} to write its rules", 60)
    except LabError as err:
        tail = cluster.kubectl("logs", "-n", NAMESPACE, f"daemonset/{which}", "--tail=15", check=False)
        fix = f"python -m msalab kubectl -- -n {NAMESPACE} logs daemonset/{which}"
        raise LabError(f"{err.problem}\n{which}'s log (last lines):\n{tail}", fix) from None
    return which


def uninstall(cluster) -> None:
    """Delete either enforcer's objects and wait until its pods are gone (each removes its
    rules as it stops); then make sure this host has nothing of them left."""
    for which in (KNP, KUBE_ROUTER):
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=true", "--timeout=120s",
                        input_text=manifest(which))
    cluster.wait_until(lambda: not _pods(cluster), "the NetworkPolicy enforcer's pods to end", 90)
    if _on_this_host():
        for leftover in remove_leftovers():
            print(f"[netpol] removed what a stopped enforcer left: {leftover}", flush=True)
