"""The offline provider: a real single-node Kubernetes run as host processes, like
Kubernetes' own hack/local-up-cluster.sh, from components built from package registries.

The CNI plugins come from Debian; containerd 2, runc, etcd, the Kubernetes components,
CoreDNS, metrics-server and the pause binary are built from the Go module proxy
(gobuild.py); their images are built here and imported into containerd.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil

from .. import paths
from ..errors import LabError
from ..ports import is_free, who_uses
from ..engine import build_small_image
from . import gatewayapi, gobuild, hostpaths, ingress, netfilter, pki, servicerange

NODE = "msalab-node"
TEMPLATES = paths.REPO / "cluster" / "offline"
ADDONS = paths.REPO / "cluster" / "addons"
KUBELET_ROOT = Path("/var/lib/msalab-kubelet")
CONTAINERD_ROOT = Path("/var/lib/msalab-containerd")
CONTAINERD_STATE = Path("/run/msalab-containerd")
CONTAINERD_SOCKET = CONTAINERD_STATE / "containerd.sock"
# port -> the process of ours that listens there (an earlier `up` of ours may hold it)
PORTS = {2379: "etcd", 2380: "etcd", 6443: "kube-apiserver", 10250: "kubelet", 10257: "kube-controller-manager",
         10259: "kube-scheduler", 10256: "kube-proxy"}
# Host ports the Envoys take through the portmap plugin (iptables DNAT, no socket): a program
# listening there would be shadowed without a word, so it must be stopped first.
HOST_PORTS = {"ingress_host_port": "Contour's Envoy (Ingress)", "gateway_host_port": "Envoy Gateway's Envoy (Gateway API)"}
START_ORDER = ["containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
               "kube-proxy"]


def home() -> Path:
    return paths.cluster_dir()


def spec() -> dict:
    return paths.versions()["cluster"]


def kubeconfig_path() -> Path:
    return home() / "admin.kubeconfig"


def netfilter_snapshot() -> Path:
    """The host's iptables and ip6tables rules as they were before the first `up`."""
    return home() / "netfilter-before.json"


def course_rule_markers() -> tuple[str, ...]:
    """Text that marks a rule as the cluster's even outside KUBE-*/CNI-* chains."""
    net = spec()["network"]
    return ("msalab", net["bridge"], net["pod_cidr"], net["service_cidr"])


# -- preflight -----------------------------------------------------------------------------
def preflight() -> None:
    """Say clearly, before anything is changed, why this machine cannot run the cluster."""
    if platform.system() != "Linux":
        raise LabError("offline mode runs Kubernetes as Linux host processes; this is " + platform.system(),
                       "use kind: python -m msalab cluster up --provider kind")
    if os.geteuid() != 0:
        raise LabError("offline mode needs root (it runs a kubelet, containerd and iptables)",
                       "sudo -E make cluster, or use kind: python -m msalab cluster up --provider kind")
    if not Path("/sys/fs/cgroup/memory").is_dir() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        raise LabError("no usable cgroup hierarchy at /sys/fs/cgroup", "use kind: --provider kind")
    # containerd and runc are built here (gobuild), at the versions the kubelet is tested with;
    # runc links libseccomp, so its build needs a C compiler and the library's headers.
    missing = [tool for tool in ("iptables", "ip", "docker", "gcc") if not shutil.which(tool)]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("CNI plugins")
    if not Path("/usr/include/seccomp.h").exists():
        missing.append("libseccomp headers")
    if missing:
        raise LabError(f"missing host tools: {', '.join(missing)}",
                       "apt-get install containernetworking-plugins iptables docker.io gcc libseccomp-dev "
                       "(make setup does it)")
    ours = _running()
    busy = [f"{port} (for {name}; used by {who_uses(port)})" for port, name in PORTS.items()
            if name not in ours and not is_free(port, "0.0.0.0")]
    busy += [f"{spec()[key]} (for {name}; used by {who_uses(spec()[key])})" for key, name in HOST_PORTS.items()
             if not is_free(spec()[key], "0.0.0.0")]
    if busy:
        raise LabError(f"ports the cluster needs are in use: {', '.join(busy)}",
                       "python -m msalab cluster down (if an earlier cluster is left), or stop those programs")


# -- building --------------------------------------------------------------------------------
def build_all() -> dict[str, Path]:
    """Every binary, from cache when it is there (about 6 minutes cold on 2 cores)."""
    s = spec()
    k8s = s["kubernetes"]
    print("[build] components from the Go module proxy (cached by version)", flush=True)
    gobuild.require_go()
    bins = {"kubernetes": gobuild.build_kubernetes(k8s["version"], k8s["staging_version"], k8s["commands"]),
            "etcd": gobuild.build_etcd(s["etcd"]["version"])}
    bins["containerd"] = gobuild.build_containerd(s["containerd"]["version"])
    bins["runc"] = gobuild.build_runc(s["runc"]["version"])
    return {**bins, **_pod_binaries()}


def build_images(bins: dict[str, Path]) -> list[str]:
    """Images for the binaries that run in pods: FROM scratch plus one static binary."""
    s = spec()
    wanted = {s["pause"]["image"]: (bins["pause"] / "pause", "/pause"),
              s["coredns"]["image"]: (bins["coredns"] / "coredns", "/coredns"),
              s["metrics-server"]["image"]: (bins["metrics-server"] / "metrics-server", "/metrics-server")}
    for image, (binary, target) in wanted.items():
        build_pod_image(image, binary, target)
    return list(wanted)


def build_pod_image(image: str, binary: Path, target: str) -> None:
    """FROM scratch, one static binary at `target`, run as a non-root user (skipped when present)."""
    name = Path(target).name
    build_small_image(image, {name: binary},
                      f"FROM scratch\nCOPY {name} {target}\nUSER 65532:65532\nENTRYPOINT [\"{target}\"]\n")


def addon_images(bins: dict[str, Path] | None = None) -> list[str]:
    """The images the add-ons run (pause, CoreDNS, metrics-server, Contour and Envoy, Envoy
    Gateway and its Envoy), built here (cached). The kind provider loads the same ones where
    nothing can be pulled."""
    from .. import images as course_images

    glibc_base, _ = course_images.base_image(None)  # Envoy needs a C library: the shop's base
    return (build_images(bins or _pod_binaries()) + ingress.build_images(glibc_base)
            + gatewayapi.build_images(glibc_base))


def _pod_binaries() -> dict[str, Path]:
    """The binaries build_images puts in images: CoreDNS, metrics-server and pause."""
    s = spec()
    bins = {name: gobuild.go_install(name, s[name]["module"], s[name]["version"]) for name in ("coredns", "metrics-server")}
    bins["pause"] = gobuild.build_local("pause", paths.REPO / "cluster" / "images" / "pause", "1")
    return bins


def import_images(images: list[str], ctr: Path) -> None:
    """docker save | ctr import: the k3s air-gap idea, so pods never pull.
    One archive for all images: a layer they share (the Debian base of the shop and both
    Envoys) is written and unpacked once, which takes about a third off the import."""
    # The docker CLI, not the SDK: the two processes stream the tar pipe to pipe, where the
    # SDK (Image.save) would copy every chunk of every image through this Python process.
    save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    result = subprocess.run([str(ctr), "--address", str(CONTAINERD_SOCKET), "-n", "k8s.io", "images", "import", "-"],
                            stdin=save.stdout, capture_output=True, text=True)
    save.stdout.close()
    saved = save.wait() == 0
    if not saved or result.returncode != 0:
        # ctr's own error first: when it stops early, docker save only reports a broken pipe.
        reason = result.stderr if result.returncode != 0 else save.stderr.read().decode(errors="replace")
        raise LabError(f"importing the images {', '.join(images)} into containerd failed: {reason.strip()[-300:]}",
                       "docker images (each must be listed), then python -m msalab cluster down and up again")
    print(f"[images] {len(images)} image(s) imported into containerd", flush=True)


# -- configuration ---------------------------------------------------------------------------
def fill(template: str, values: dict) -> str:
    """{name} placeholders replaced by values (also the kind node's templates)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", str(value))
    return template


def _kubeconfig(path: Path, ca: Path, cert: Path, key: Path, user: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "msalab",
        "clusters": [{"name": "msalab", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "msalab", "context": {"cluster": "msalab", "user": user}}],
    }, indent=2))
    return path


def write_config(bins: dict[str, Path]) -> dict:
    net = spec()["network"]
    pki_dir = home() / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(pki_dir, "ca")
    front_ca = pki.make_ca(pki_dir, "front-proxy-ca")
    service_ip = net["service_cidr"].split("/")[0].rsplit(".", 1)[0] + ".1"
    names = ["127.0.0.1", net["node_ip"], service_ip, "localhost", "kubernetes", "kubernetes.default",
             "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    certs = {
        "apiserver": pki.issue(pki_dir, ca, "apiserver", "kube-apiserver", server_names=names, client=False),
        "apiserver-kubelet-client": pki.issue(pki_dir, ca, "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                              "system:masters"),
        "front-proxy-client": pki.issue(pki_dir, front_ca, "front-proxy-client", "front-proxy-client"),
        "admin": pki.issue(pki_dir, ca, "admin", "msalab-admin", "system:masters"),
        "controller-manager": pki.issue(pki_dir, ca, "controller-manager", "system:kube-controller-manager"),
        "scheduler": pki.issue(pki_dir, ca, "scheduler", "system:kube-scheduler"),
        "kubelet": pki.issue(pki_dir, ca, "kubelet", f"system:node:{NODE}", "system:nodes",
                             server_names=[net["node_ip"], "127.0.0.1", NODE]),
        "kube-proxy": pki.issue(pki_dir, ca, "kube-proxy", "system:kube-proxy"),
    }
    sa_key, sa_pub = pki.service_account_keys(pki_dir)
    kubeconfigs = {name: _kubeconfig(home() / f"{name}.kubeconfig", ca[0], *certs[name], name)
                   for name in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy")}
    (home() / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    resolv = home() / "resolv.conf"
    resolv.write_text("# pods with dnsPolicy Default: no upstream resolver on this machine\nnameserver 127.0.0.1\n")
    values = {**net, "ca": ca[0], "runc": bins["runc"] / "runc", "containerd_root": CONTAINERD_ROOT, "containerd_state": CONTAINERD_STATE,
              "containerd_socket": CONTAINERD_SOCKET, "pause_image": spec()["pause"]["image"],
              "cni_conf_dir": home() / "cni" / "net.d", "ipam_dir": home() / "cni" / "ipam",
              "resolv_conf": resolv, "kubeconfig": kubeconfigs["kube-proxy"], "node_name": NODE}
    for template, target in (("containerd.toml", home() / "containerd.toml"),
                             ("cni.conflist", home() / "cni" / "net.d" / "10-msalab.conflist"),
                             ("kubelet.yaml", home() / "kubelet.yaml"), ("kube-proxy.yaml", home() / "kube-proxy.yaml")):
        target.write_text(fill((TEMPLATES / template).read_text(), values))
    return {"ca": ca, "front_ca": front_ca, "certs": certs, "sa": (sa_key, sa_pub), "kubeconfigs": kubeconfigs,
            "net": net}


def commands(bins: dict[str, Path], cfg: dict) -> dict[str, list[str]]:
    k8s, net, certs, ca = bins["kubernetes"], cfg["net"], cfg["certs"], cfg["ca"][0]
    kc = cfg["kubeconfigs"]
    return {
        "containerd": [str(bins["containerd"] / "containerd"), "--config", str(home() / "containerd.toml")],
        "etcd": [str(bins["etcd"] / "etcd"), "--data-dir", str(home() / "etcd"), "--name", NODE,
                 "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
                 "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                 "--initial-cluster", f"{NODE}=http://127.0.0.1:2380", "--quota-backend-bytes", str(2 * 2**30)],
        "kube-apiserver": [
            str(k8s / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379", "--bind-address=0.0.0.0",
            "--secure-port=6443", f"--advertise-address={net['node_ip']}",
            f"--tls-cert-file={certs['apiserver'][0]}", f"--tls-private-key-file={certs['apiserver'][1]}",
            f"--client-ca-file={ca}", "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            f"--service-cluster-ip-range={net['service_cidr']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={cfg['sa'][1]}", f"--service-account-signing-key-file={cfg['sa'][0]}",
            f"--kubelet-client-certificate={certs['apiserver-kubelet-client'][0]}",
            f"--kubelet-client-key={certs['apiserver-kubelet-client'][1]}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            # The aggregation layer, for metrics.k8s.io (kubectl top, the HPA).
            f"--requestheader-client-ca-file={cfg['front_ca'][0]}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={certs['front-proxy-client'][0]}",
            f"--proxy-client-key-file={certs['front-proxy-client'][1]}", "--enable-aggregator-routing=true",
            "--enable-admission-plugins=NodeRestriction", "--profiling=false"],
        "kube-controller-manager": [
            str(k8s / "kube-controller-manager"), f"--kubeconfig={kc['controller-manager']}",
            f"--authentication-kubeconfig={kc['controller-manager']}",
            f"--authorization-kubeconfig={kc['controller-manager']}", "--bind-address=127.0.0.1",
            f"--cluster-signing-cert-file={ca}", f"--cluster-signing-key-file={cfg['ca'][1]}",
            f"--root-ca-file={ca}", f"--service-account-private-key-file={cfg['sa'][0]}",
            "--use-service-account-credentials=true", "--leader-elect=false",
            f"--service-cluster-ip-range={net['service_cidr']}", "--profiling=false"],
        "kube-scheduler": [
            str(k8s / "kube-scheduler"), f"--kubeconfig={kc['scheduler']}",
            f"--authentication-kubeconfig={kc['scheduler']}", f"--authorization-kubeconfig={kc['scheduler']}",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"],
        "kubelet": [
            str(k8s / "kubelet"), f"--config={home() / 'kubelet.yaml'}", f"--kubeconfig={kc['kubelet']}",
            f"--hostname-override={NODE}", f"--node-ip={net['node_ip']}", f"--root-dir={KUBELET_ROOT}",
            f"--tls-cert-file={certs['kubelet'][0]}", f"--tls-private-key-file={certs['kubelet'][1]}",
            # The kubelet's built-in cAdvisor looks for containerd at the default socket,
            # /run/containerd/containerd.sock, whatever the CRI endpoint is. Here nothing of
            # ours is there (on many machines another containerd is): point it at the course's.
            # (A cAdvisor flag the kubelet still carries, deprecated but not removed.)
            f"--containerd={CONTAINERD_SOCKET}", "--containerd-namespace=k8s.io"],
        "kube-proxy": [str(k8s / "kube-proxy"), f"--config={home() / 'kube-proxy.yaml'}"],
    }


# -- processes ---------------------------------------------------------------------------------
def _pid_dir() -> Path:
    path = home() / "pids"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _running() -> dict[str, int]:
    alive = {}
    for pid_file in _pid_dir().glob("*.pid"):
        pid = int(pid_file.read_text())
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            alive[pid_file.stem] = pid
    return alive


def _start(name: str, command: list[str], **env: str) -> None:
    if name in _running():
        return
    logs = home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **env})
    (_pid_dir() / f"{name}.pid").write_text(str(proc.pid))


def _wait(what: str, ready, timeout_s: float = 90, log: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if log and log not in _running():
            break
        time.sleep(0.5)
    tail = ""
    if log:
        log_path = home() / "logs" / f"{log}.log"
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-12:]) if log_path.exists() else ""
    raise LabError(f"{what} did not become ready{': ' + tail if tail else ''}",
                   f"read {home() / 'logs'}; then python -m msalab cluster down and up again")


def _apiserver_ready() -> bool:
    import ssl
    import urllib.request

    pki_dir = home() / "pki"
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    try:
        with urllib.request.urlopen("https://127.0.0.1:6443/readyz", context=context, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def setup_bridge(net: dict) -> None:
    """The pods' bridge, made before the first pod so the node IP (the API server's
    advertised address) exists from the start."""
    bridge = net["bridge"]
    if subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
        prefix = net["pod_cidr"].split("/")[1]
        subprocess.run(["ip", "addr", "add", f"{net['node_ip']}/{prefix}", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    # Docker sets the FORWARD policy to DROP, and bridged pod traffic passes FORWARD
    # (bridge-nf-call-iptables): let the pods' own bridge through, and nothing more.
    for rule in _forward_rules(bridge):
        if subprocess.run(["iptables", "-C", *rule], capture_output=True).returncode != 0:
            subprocess.run(["iptables", "-I", *rule], check=True)
    # That ACCEPT also passes a pod's packet to a Service with no ready pod, which kube-proxy
    # would refuse: refused at routing instead, before it can leave by the default route.
    servicerange.apply_here()


def _forward_rules(bridge: str) -> list[list[str]]:
    comment = ["-m", "comment", "--comment", "msalab cluster pods"]
    return [["FORWARD", "-i", bridge, *comment, "-j", "ACCEPT"], ["FORWARD", "-o", bridge, *comment, "-j", "ACCEPT"]]


def containerd_bin() -> Path:
    return gobuild.build_root("containerd", spec()["containerd"]["version"]) / "bin"


def kubernetes_bin() -> Path:
    """Where the built Kubernetes commands are (kubectl, kube-proxy, ...)."""
    return gobuild.build_root("kubernetes", spec()["kubernetes"]["version"]) / "bin"


def kubectl(*args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(kubernetes_bin() / "kubectl"), f"--kubeconfig={kubeconfig_path()}", *args], capture_output=True,
                            text=True, input=input_text)
    if check and result.returncode != 0:
        raise LabError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()[-400:]}", "python -m msalab cluster status")
    return result


def up(extra_images: list[str]) -> None:
    started = time.monotonic()
    preflight()
    bins = build_all()
    images = addon_images(bins) + extra_images
    # Rendered before the host is changed: a proxy or Helm failure stops `up` with nothing to undo.
    ingress_docs, gateway_docs = ingress.manifests(), gatewayapi.manifests()
    home().mkdir(parents=True, exist_ok=True)
    netfilter.save_snapshot(netfilter_snapshot())  # before anything touches the rules
    hostpaths.save_snapshot(home() / "hostpaths-before.json")  # and before any kubelet runs
    cfg = write_config(bins)
    setup_bridge(cfg["net"])
    cmds = commands(bins, cfg)
    print("[start] host processes: " + ", ".join(START_ORDER), flush=True)
    # containerd starts each pod's shim by name from its PATH: ours first, not the host's.
    _start("containerd", cmds["containerd"], PATH=f"{bins['containerd']}:{os.environ.get('PATH', '')}")
    _wait("containerd", CONTAINERD_SOCKET.exists, 30, "containerd")
    import_images(images, bins["containerd"] / "ctr")
    _start("etcd", cmds["etcd"])
    _start("kube-apiserver", cmds["kube-apiserver"])
    _wait("the API server", _apiserver_ready, 90, "kube-apiserver")
    for name in START_ORDER[3:]:
        _start(name, cmds[name])
    _wait(f"node {NODE}", lambda: "True" in kubectl("get", "node", NODE, "-o",
                                                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                                                    check=False).stdout, 120, "kubelet")
    print("[addons] CoreDNS, metrics-server, Contour (Ingress), Envoy Gateway (Gateway API)", flush=True)
    kubectl("apply", "-f", str(ADDONS / "offline"), "-f", str(ADDONS / "metrics-server.yaml"))
    ingress.install(kubectl, ingress_docs, wait=False)  # all add-ons start together; then wait for all
    gatewayapi.install(kubectl, gateway_docs, wait=False)
    wait_system_pods()
    ingress.wait_ready(kubectl)
    gatewayapi.wait_ready(kubectl)
    print(f"[ready] cluster up in {time.monotonic() - started:.0f} s; kubeconfig: {kubeconfig_path()}", flush=True)


def wait_system_pods(timeout_s: float = 180) -> None:
    def all_running() -> bool:
        out = kubectl("get", "pods", "-n", "kube-system", "-o",
                      "jsonpath={range .items[*]}{.status.phase}{' '}{.status.containerStatuses[*].ready}{'\\n'}{end}",
                      check=False).stdout.split("\n")
        rows = [r for r in out if r.strip()]
        return bool(rows) and all(r.startswith("Running") and "false" not in r for r in rows)

    # Three good looks in a row: a crash-looping pod can look ready for a moment.
    streak = {"count": 0}

    def steadily_running() -> bool:
        streak["count"] = streak["count"] + 1 if all_running() else 0
        return streak["count"] >= 3

    _wait("the kube-system pods", steadily_running, timeout_s)


# -- down ----------------------------------------------------------------------------------------
def stop_process(pid: int, timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not ended within timeout_s (also used by nerdctl.py)."""
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout_s)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.NoSuchProcess:
        pass


def down() -> list[str]:
    """Remove everything up created: processes, containers, mounts, network, rules, state."""
    done = []
    running = _running()
    for name in reversed(START_ORDER):
        if name in running:
            stop_process(running[name])
            done.append(name)
    # Container shims outlive containerd by design; these belong to our containerd only.
    shims = hostpaths.shims_of(CONTAINERD_STATE)
    sockets = hostpaths.shim_sockets(shims)
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        our_shim = proc.pid in shims
        if our_shim or (str(KUBELET_ROOT) in cmdline and proc.pid != os.getpid()):
            try:
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
            except psutil.Error:
                pass
    hostpaths.remove_files(sockets)  # a killed shim cannot remove its own
    hostpaths.unmount_under(KUBELET_ROOT, CONTAINERD_STATE, CONTAINERD_ROOT)
    for netns in Path("/run/netns").glob("cni-*"):
        subprocess.run(["ip", "netns", "delete", netns.name], capture_output=True)
    # Exactly the rules and chains the cluster added since `up` (KUBE-*, CNI-*, the bridge's
    # FORWARD rules), in both families; what was there before stays.
    if netfilter_snapshot().exists() or (home() / "pki").exists():  # an offline cluster was set up here
        for problem in netfilter.restore(netfilter_snapshot(), course_rule_markers()):
            print(f"[down] could not remove: {problem}", flush=True)
    for problem in hostpaths.restore(home() / "hostpaths-before.json"):
        print(f"[down] could not remove: {problem}", flush=True)
    servicerange.remove_here()
    bridge = spec()["network"]["bridge"]
    _delete_pod_links(bridge)
    subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
    for folder in (KUBELET_ROOT, CONTAINERD_STATE, CONTAINERD_ROOT, home()):
        shutil.rmtree(folder, ignore_errors=True)
    return done


def _delete_pod_links(bridge: str) -> None:
    """The host ends of the pods' veth pairs, on the course's bridge. Deleting a pod's network
    namespace usually takes its pair with it, but the kernel frees a namespace only when the
    last reference to it goes, which can be long after the processes in it have ended; the
    pair then outlives the cluster. Deleting the host end removes both ends at once."""
    ports = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    for line in ports.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        subprocess.run(["ip", "link", "delete", name], capture_output=True)


def status() -> dict:
    return {"provider": "offline", "processes": _running(), "kubeconfig": str(kubeconfig_path())}
