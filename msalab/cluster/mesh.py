"""Part IV's service mesh: Istio on the course cluster (python -m msalab mesh install|status|uninstall).

Learners on kind: the release's istioctl installs the release's images. Offline (no image can be
pulled): istiod, pilot-agent and istioctl are built from the Go module proxy; the pilot image is
pilot-discovery FROM scratch, and proxyv2 is pilot-agent with upstream Envoy from PyPI (Envoy
Gateway's build), Debian's iptables for istio-init, and Istio's bootstrap template. istioctl
installs them from the charts embedded in it (no chart is fetched).

Upstream Envoy lacks Istio's own filters (istio.metadata_exchange, istio.stats, istio.alpn): the
offline install turns off what would send them (OFFLINE_SETTINGS), so Envoy accepts every
listener and cluster. What that costs learners (no istio_* metrics, no Kiali graph from them,
no ambient mode) is said in the book where it matters.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from .. import paths
from ..engine import build_small_image
from ..errors import LabError
from . import gobuild

# Without these istiod configures Istio-only filters, which upstream Envoy rejects (LDS/CDS
# update_rejected), and injected pods never become ready.
OFFLINE_SETTINGS = ["values.pilot.env.PILOT_ENABLE_METADATA_EXCHANGE=false",
                    "values.pilot.env.PILOT_ENABLE_ALPN_FILTER=false",
                    "values.telemetry.enabled=false"]
# istio-init runs iptables (nf_tables backend); these are Debian's iptables and its libraries.
IPTABLES_PACKAGES = ["iptables", "libip4tc2", "libip6tc2", "libxtables12", "libmnl0", "libnetfilter-conntrack3",
                     "libnfnetlink0", "libnftnl11"]


def spec() -> dict:
    return paths.versions()["mesh"]["istio"]


def _ldflags(s: dict) -> str:
    """Hub and version in the binaries: istioctl's default images are then the ones built here
    (hub/NAME:buildVersion, the upstream tag; install_command sets the fixes' tag). buildTag,
    shown by `istioctl version -o json`, names the fixes."""
    info = {"buildVersion": s["offline_tag"], "buildGitRevision": s["commit"], "buildStatus": "Clean",
            "buildTag": image_tag(), "buildHub": s["hub"], "buildOS": "linux", "buildArch": "amd64"}
    return " ".join(f"-X istio.io/istio/pkg/version.{key}={value}" for key, value in info.items())


def _patches() -> list[Path]:
    listed = [paths.REPO / patch for patch in spec().get("patches", [])]
    missing = [str(patch) for patch in listed if not patch.is_file()]
    if missing:
        raise LabError(f"versions.yaml mesh.istio.patches lists {', '.join(missing)}, which is not there",
                       "git checkout -- cluster/offline (or remove the line from versions.yaml)")
    return listed


FIXES_SUFFIX = "-msalab."  # image_tag(): offline_tag, this, and the fixes' digest


def image_tag() -> str:
    """The tag of the images built here: the upstream tag, plus a digest of the commit and the
    fixes the build carries (versions.yaml mesh.istio.patches), so a changed pin or fix is never
    served from a cached binary, image or node's image store."""
    patches = _patches()
    if not patches:
        return spec()["offline_tag"]
    digest = hashlib.sha256(spec()["commit"].encode())
    for patch in patches:  # name and length too: no two lists of fixes give the same bytes
        content = patch.read_bytes()
        digest.update(f"\0{patch.name}\0{len(content)}\0".encode() + content)
    return f"{spec()['offline_tag']}{FIXES_SUFFIX}{digest.hexdigest()[:10]}"


def build_binaries() -> dict[str, Path]:
    """pilot-discovery and istioctl (one build), pilot-agent (other tags): Istio's Makefile tags.
    All three are built in a copy of the module with the course's fixes applied. `make test`
    starts these builds in the background early (msalab.prebuild); a later `mesh install`
    waits for them (gobuild's build lock) instead of building them twice."""
    s = spec()
    tag, patches, ldflags = image_tag(), _patches(), f"-s -w {_ldflags(s)}"
    return {name: gobuild.build_patched_module(name, s["module"], s["version"], tag, patches,
                                               ["-tags", tags, "-ldflags", ldflags], commands)
            for name, tags, commands in (("istio", "vtprotobuf,disable_pgv", ["pilot/cmd/pilot-discovery", "istioctl/cmd/istioctl"]),
                                         ("istio-agent", "agent,disable_pgv,grpcnotrace,retrynotrace", ["pilot/cmd/pilot-agent"]))}


def build_images(envoy_image: str) -> list[str]:
    """pilot and proxyv2 under the release names (hub/pilot:tag), so istioctl's defaults fit."""
    s = spec()
    bins = build_binaries()
    tag = image_tag()
    pilot, proxy = f"{s['hub']}/pilot:{tag}", f"{s['hub']}/proxyv2:{tag}"
    build_small_image(pilot, {"pilot-discovery": bins["istio"] / "pilot-discovery"},
                      "FROM scratch\nCOPY pilot-discovery /usr/local/bin/pilot-discovery\nUSER 1337:1337\n"
                      "ENTRYPOINT [\"/usr/local/bin/pilot-discovery\"]\n")
    source = gobuild.download_module(s["module"], s["version"])
    build_small_image(proxy, {"pilot-agent": bins["istio-agent"] / "pilot-agent",
                              "envoy_bootstrap.json": source / "tools" / "packaging" / "common" / "envoy_bootstrap.json",
                              "iptables.tar": _iptables_tree()},
                      f"FROM {envoy_image}\nADD iptables.tar /\n"
                      "COPY envoy_bootstrap.json /var/lib/istio/envoy/envoy_bootstrap_tmpl.json\n"
                      "COPY pilot-agent /usr/local/bin/pilot-agent\nUSER 1337:1337\n"
                      "ENTRYPOINT [\"/usr/local/bin/pilot-agent\"]\n")
    return [pilot, proxy]


def _iptables_tree() -> Path:
    """Debian's iptables packages unpacked into one tar (cached), as istio-init needs them."""
    import tarfile
    import tempfile

    target = paths.cache_dir() / "mesh" / "iptables-bookworm.tar"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *IPTABLES_PACKAGES], cwd=tmp, check=True, capture_output=True)
        root = Path(tmp) / "root"
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        with tarfile.open(target.with_suffix(".partial"), "w") as archive:
            for entry in sorted(root.iterdir()):
                archive.add(entry, arcname=entry.name)
    target.with_suffix(".partial").rename(target)
    return target


# -- installing: the same command on both providers ------------------------------------------
SHARED_MESH_CONFIG = "msalab-shared-mesh-config"  # a ConfigMap in istio-system
TRACING_PROVIDER = "jaeger-otlp"  # Lab IV.5's Jaeger, in lab-telemetry


def student_tracing_provider(mesh_namespace: str) -> str:
    """A workshop student's own provider, for their Jaeger in their mesh namespace (the hub's
    jupyterhub_config.py and hub.yaml's admission rule spell the same name)."""
    return f"{TRACING_PROVIDER}-{mesh_namespace}"

# Both providers: the access log on (labs follow requests by it; upstream Envoy's file logger);
# Envoy's per-service stats kept (Istio's default inclusion list drops every cluster.inbound|...
# and cluster.outbound|... stat, which the labs and Prometheus read); and requests sized for a
# 2-core classroom machine (the profile asks 500m/2Gi for istiod and 100m/128Mi per sidecar,
# which a meshed shop or two would exhaust on one node). And a 5 s drain: when a policy replaces
# a listener's filter chains, each proxy keeps serving the connections it accepted before under
# the old chains for the drain time (Istio's default, 45 s), so a pooled connection could still
# carry a call under a deleted rule; a lab or test that changes policies waits that drain out
# (msalab.mesh.Mesh.settled), and 5 s keeps the wait short. It also caps a pod's shutdown drain
# (terminationDrainDuration, 5 s by default: pilot-agent drains the inbound listeners gracefully,
# for Envoy's drain time), so raising that one alone would not lengthen it.
COURSE_SETTINGS = ["profile=minimal", "meshConfig.accessLogFile=/dev/stdout",
                   "meshConfig.defaultConfig.drainDuration=5s",
                   "meshConfig.defaultConfig.proxyStatsMatcher.inclusionPrefixes[0]=cluster.outbound|",
                   "meshConfig.defaultConfig.proxyStatsMatcher.inclusionPrefixes[1]=cluster.inbound|",
                   "values.pilot.resources.requests.cpu=50m", "values.pilot.resources.requests.memory=256Mi",
                   "values.pilot.autoscaleEnabled=false",  # one istiod: a busy lab must not start more on 2 cores
                   # Lab IV.5's Jaeger, as a tracing provider a Telemetry resource can name.
                   f"meshConfig.extensionProviders[0].name={TRACING_PROVIDER}",
                   "meshConfig.extensionProviders[0].opentelemetry.service=jaeger.lab-telemetry.svc.cluster.local",
                   "meshConfig.extensionProviders[0].opentelemetry.port=4317",
                   "values.global.proxy.resources.requests.cpu=10m",
                   "values.global.proxy.resources.requests.memory=40Mi",
                   # A second mesh config, which istiod merges into its own where it exists: a
                   # classroom workshop adds each student's tracing provider there (msalab.workshop).
                   f"values.pilot.env.SHARED_MESH_CONFIG={SHARED_MESH_CONFIG}"]
INJECTOR_WEBHOOK = "istio-sidecar-injector"
SYSTEM_NAMESPACE = "istio-system"


def install() -> str:
    """Install Istio on the course cluster (idempotent: istioctl reconciles what is there)."""
    provider = _provider()
    if provider == "workshop":
        raise LabError("a student's server cannot install the mesh: the instructor installs it once, for the class",
                       "ask the instructor: python -m msalab mesh install, before python -m msalab workshop up")
    if built_here(provider):
        _built_images(provider)
    run_istioctl(*install_command(provider), timeout_s=600)
    _kubectl("rollout", "status", "deployment/istiod", "-n", "istio-system", "--timeout=180s")
    return f"Istio {version(provider)} installed ({provider}): istiod ready, injection webhook {INJECTOR_WEBHOOK}"


def built_here(provider: str) -> bool:
    """Istio built from the Go module proxy (the offline cluster, and kind on the course's own
    node image, where nothing can be pulled), or the release (kind on its published image).
    In a workshop student's server, the instructor's install tells: istiod's image is the
    build's (hub/pilot:offline_tag, with the fixes' suffix) when it was built here. (The server
    has no copy of the fixes, so it does not compute image_tag().)"""
    if provider == "offline":
        return True
    if provider == "workshop":
        image = _kubectl("get", "deployment", "istiod", "-n", SYSTEM_NAMESPACE,
                         "-o", "jsonpath={.spec.template.spec.containers[0].image}")
        return image.split(FIXES_SUFFIX)[0] == f"{spec()['hub']}/pilot:{spec()['offline_tag']}"
    from . import kind

    return bool(kind.setup().get("course_node"))


def version(provider: str) -> str:
    return spec()["offline_tag"] if built_here(provider) else spec()["release"]


def install_command(provider: str) -> list[str]:
    # The images built here carry the course's fixes in their tag (image_tag); istioctl's own
    # default tag is the version it reports (buildVersion), the upstream one.
    built = built_here(provider)
    settings = [*COURSE_SETTINGS, *([*OFFLINE_SETTINGS, f"tag={image_tag()}"] if built else _release_images())]
    return ["install", "-y", *[arg for setting in settings for arg in ("--set", setting)]]


def _release_images() -> list[str]:
    """The release's images by the references versions.yaml pins (digests where known)."""
    images = spec()["images"]
    return [f"values.pilot.image={images['pilot']}", f"values.global.proxy.image={images['proxyv2']}",
            f"values.global.proxy_init.image={images['proxyv2']}"]


def _built_images(provider: str) -> None:
    """Build (cached) the pilot and proxyv2 images and put them where the cluster's pods run:
    the offline cluster's containerd (unless it has them), or the kind node (kind load)."""
    from . import gatewayapi, kind, offline

    images = build_images(gatewayapi.spec()["envoy-gateway"]["envoy"]["image"])
    if provider == "kind":
        kind.load_images(images)
        return
    ctr = offline.containerd_bin() / "ctr"
    listed = subprocess.run([str(ctr), "--address", str(offline.CONTAINERD_SOCKET), "-n", "k8s.io", "images", "ls", "-q"],
                            capture_output=True, text=True).stdout.split()
    missing = [image for image in images if image not in listed]
    if missing:
        offline.import_images(missing, ctr)


def _provider() -> str:
    from . import manage

    provider = manage.current_provider()
    if provider is None:
        raise LabError("no course cluster is running, so there is nothing to install the mesh on",
                       "python -m msalab cluster up; then python -m msalab mesh install")
    return provider


def istioctl(provider: str | None = None) -> Path:
    """istioctl of the installed mesh: built here, or the release's (kind on its published image);
    in a workshop student's server, the one in its image (msalab.workshop.images)."""
    provider = provider or _provider()
    if provider == "workshop":
        found = shutil.which("istioctl")
        if found is None:
            raise LabError("istioctl is not in this server's image", "ask the instructor: python -m msalab workshop up rebuilds it")
        return Path(found)
    if built_here(provider):
        return build_binaries()["istio"] / "istioctl"
    return _release_istioctl()


def _release_istioctl() -> Path:
    """The release's istioctl from GitHub, checked against the .sha256 file published beside
    it, cached by version. (Not reachable on the machines the course is built on: kind only.)"""
    import io
    import tarfile

    import httpx

    release = spec()["release"]
    target = paths.cache_dir() / f"istioctl-{release}" / "istioctl"
    if target.exists():
        return target
    url = f"https://github.com/istio/istio/releases/download/{release}/istioctl-{release}-linux-amd64.tar.gz"
    fix = "check this machine's internet access, or use the offline cluster: python -m msalab cluster down; " \
          "python -m msalab cluster up --provider offline"
    try:
        archive = httpx.get(url, follow_redirects=True, timeout=120).raise_for_status().content
        expected = httpx.get(url + ".sha256", follow_redirects=True, timeout=30).raise_for_status().text.split()[0]
    except httpx.HTTPError as err:
        raise LabError(f"downloading istioctl {release} failed ({err})", fix) from err
    if hashlib.sha256(archive).hexdigest() != expected:
        raise LabError(f"istioctl {release}: the download does not match its published sha256", fix)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as bundle:
        target.write_bytes(bundle.extractfile("istioctl").read())
    target.chmod(0o755)
    return target


def run_istioctl(*args: str, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess:
    from . import manage

    xds = _workshop_xds(args)
    command = [str(istioctl()), f"--kubeconfig={manage.kubeconfig()}", *args, *xds]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if check and result.returncode != 0 and SYNCZ_HANG in result.stderr:
        raise LabError("istiod does not answer proxy-status: a fault of Istio's released istiod (a proxy's lock taken "
                       "twice; the course's own build has the fix; the instructors' guide, Part IV in a workshop)",
                       "ask the instructor: python -m msalab kubectl -- rollout restart deployment/istiod -n istio-system")
    if check and result.returncode != 0:
        raise LabError(f"istioctl {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[-400:]}",
                       "python -m msalab mesh status (it says what is not ready and how to fix it)")
    return result


# What istioctl says when istiod's XDS debug handler never answers (the guide: a fault of istiod's).
SYNCZ_HANG = "still waiting for updates: istio.io/debug/syncz"


def _workshop_xds(args: tuple[str, ...]) -> list[str]:
    """In a workshop student's server, istioctl proxy-status asks istiod directly (its XDS port)
    as the student's mesh namespace: istiod then answers about that namespace's proxies only
    (its debug endpoints' namespace authorization), and the student needs no right in
    istio-system. (By default istioctl reaches istiod through a port-forward as istio-system's
    own account, which would show every student's proxies.)"""
    from ..workshop import mode

    if not (args and args[0] == "proxy-status" and mode.mesh_namespace()):
        return []
    return [f"--xds-address=istiod.{SYSTEM_NAMESPACE}.svc:15012", f"--istioNamespace={mode.mesh_namespace()}"]


def _kubectl(*args: str, check: bool = True) -> str:
    from . import manage

    result = subprocess.run([*manage.kubectl_command(), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise LabError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()[-400:]}", "python -m msalab mesh status")
    return result.stdout


# What istiod and istioctl leave in a cluster, checked after uninstall: `istioctl uninstall
# --purge` removes the CRDs, webhooks and istio-system's objects, but not the GatewayClasses
# `istio` and `istio-remote` that istiod creates by itself when the Gateway API CRDs exist.
# (istio.io/mesh-controller: the class `istio-waypoint`, which the ambient profile adds.)
ISTIO_GATEWAY_CONTROLLERS = ("istio.io/gateway-controller", "istio.io/unmanaged-gateway", "istio.io/mesh-controller")


def uninstall() -> list[str]:
    """Everything Istio added, removed; returns what is still there (empty when clean)."""
    _provider()
    run_istioctl("uninstall", "--purge", "-y", check=False, timeout_s=300)
    for name in _istio_gateway_classes():
        _kubectl("delete", "gatewayclass", name, "--ignore-not-found")
    _kubectl("delete", "namespace", "istio-system", "--ignore-not-found", "--timeout=120s")
    return leftovers()


def _istio_gateway_classes() -> list[str]:
    out = _kubectl("get", "gatewayclass", "-o",
                   "jsonpath={range .items[*]}{.metadata.name} {.spec.controllerName}{'\\n'}{end}", check=False)
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] and line.split()[1] in ISTIO_GATEWAY_CONTROLLERS]


def leftovers() -> list[str]:
    """Istio's CRDs, webhooks, GatewayClasses and namespace, where any is left."""
    found = [name for name in _kubectl("get", "crd", "-o", "name").split() if name.endswith(".istio.io")]
    webhooks = _kubectl("get", "mutatingwebhookconfigurations,validatingwebhookconfigurations", "-o", "name").split()
    found += [name for name in webhooks if "istio" in name]
    found += [f"gatewayclass/{name}" for name in _istio_gateway_classes()]
    if _kubectl("get", "namespace", "istio-system", "--ignore-not-found", "-o", "name").strip():
        found.append("namespace/istio-system")
    return found


def reads_shared_config() -> bool:
    """istiod merges the ConfigMap SHARED_MESH_CONFIG into its mesh config (a mesh installed
    before the course set it does not: `mesh install` again updates it in place)."""
    found = _kubectl("get", "deployment", "istiod", "-n", SYSTEM_NAMESPACE, "--ignore-not-found", "-o",
                     "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='SHARED_MESH_CONFIG')].value}", check=False)
    return found.strip() == SHARED_MESH_CONFIG


def installed() -> bool:
    """istiod's Deployment exists; in a workshop student's server (which cannot read istio-system),
    the workshop gave the student a namespace inside the mesh."""
    from ..workshop import mode

    if mode.namespace():
        return mode.mesh_namespace() is not None
    return bool(_kubectl("get", "deployment", "istiod", "-n", SYSTEM_NAMESPACE, "--ignore-not-found", "-o", "name").strip())


# -- status: what `mesh status` and `doctor` report, each with the command that fixes it -------
def status() -> list[tuple[bool, str, str]]:
    """(ok, what, fix) for istiod, the injection webhook, the proxies and injected namespaces."""
    _provider()
    if not installed():
        if _provider() == "workshop":
            return [(False, "this workshop gives you no namespace inside the mesh (Istio was not installed when it "
                            "started)", "ask the instructor (the instructors' guide: Part IV)")]
        return [(False, "Istio is not installed on the course cluster", "python -m msalab mesh install")]
    return [_istiod_ready(), _injector_ready(), *_proxies_synced(), *_pods_missing_sidecars()]


def control_plane_ready() -> bool:
    """istiod and its injection webhook are ready (what a lab needs before it deploys)."""
    return installed() and _istiod_ready()[0] and _injector_ready()[0]


def _istiod_ready() -> tuple[bool, str, str]:
    if _provider() == "workshop":  # the student cannot read istio-system: istiod answering is the test
        try:
            proxy_sync()
            return True, "istiod: answers (proxy-status through its XDS port)", ""
        except LabError as err:
            return False, f"istiod: does not answer ({err.problem[:200]})", "ask the instructor: python -m msalab mesh status"
    ready, image = _kubectl("get", "deployment", "istiod", "-n", "istio-system",
                            "-o", "jsonpath={.status.readyReplicas} {.spec.template.spec.containers[0].image}").split(" ")
    current = f"{spec()['hub']}/pilot:{image_tag()}" if built_here(_provider()) else image
    if image != current:  # an install from before the course's current fixes (versions.yaml mesh.istio.patches)
        return (False, f"istiod: runs {image}, not the course's current build {current}",
                "python -m msalab mesh install (it replaces istiod in place)")
    return (bool(ready.strip()) and int(ready) > 0, f"istiod: {ready.strip() or 0} pod(s) ready",
            "python -m msalab kubectl -- logs -n istio-system deployment/istiod; then python -m msalab mesh install")


def _injector_ready() -> tuple[bool, str, str]:
    """The webhook exists and istiod has written its CA into it (else the API server cannot call it).
    In a workshop student's server (which cannot read webhooks): a pod created in the student's
    mesh namespace as a server-side dry run, which runs the webhooks and stores nothing, comes
    back with a sidecar. The pod asks for one itself (sidecar.istio.io/inject): Lab IV.6 takes the
    namespace's injection label off, and a lab stopped there must not read as a broken mesh."""
    if _provider() == "workshop":
        from ..workshop import mode
        from . import manage

        probe = ('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "injection-probe", '
                 '"labels": {"sidecar.istio.io/inject": "true"}}, '
                 '"spec": {"containers": [{"name": "probe", "image": "msalab/shop:0.3.0"}]}}')
        result = subprocess.run([*manage.kubectl_command(), "create", "--dry-run=server", "-n", mode.mesh_namespace(), "-f", "-",
                                 "-o", "jsonpath={.spec.initContainers[*].name} {.spec.containers[*].name}"],
                                input=probe, capture_output=True, text=True)
        injected = result.returncode == 0 and "istio-proxy" in result.stdout.split()
        return (injected, f"injection in {mode.mesh_namespace()}: " + ("a new pod gets its sidecar" if injected else
                f"a new pod gets no sidecar ({(result.stderr or result.stdout).strip()[-200:]})"),
                "ask the instructor: python -m msalab mesh status")
    bundle = _kubectl("get", "mutatingwebhookconfiguration", INJECTOR_WEBHOOK, "--ignore-not-found",
                      "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}")
    return (bool(bundle.strip()), f"injection webhook {INJECTOR_WEBHOOK}: " + ("ready" if bundle.strip() else "missing or without its CA"),
            "python -m msalab mesh install (it restores the webhook)")


def proxy_sync() -> dict[str, dict[str, str]]:
    """Each proxy's xDS state as istiod records it: {"pod.namespace": {"CDS": "SYNCED", ...}}.
    (istioctl proxy-status prints only the subscribed types; its JSON has the state.)"""
    import json

    short = {"Cluster": "CDS", "ClusterLoadAssignment": "EDS", "Listener": "LDS", "RouteConfiguration": "RDS",
             "Secret": "SDS"}
    text, decoder, entries = run_istioctl("proxy-status", "--output", "json").stdout.strip(), json.JSONDecoder(), []
    while text:  # one JSON document per istiod answer, one after the other
        document, end = decoder.raw_decode(text)
        entries += document.get("resources", [])
        text = text[end:].lstrip()
    return {entry["node"]["id"]: {short.get(c["typeUrl"].rsplit(".", 1)[-1], c["typeUrl"]): c.get("configStatus", "UNKNOWN")
                                  for c in entry.get("genericXdsConfigs", [])}
            for entry in entries}


def _proxies_synced() -> list[tuple[bool, str, str]]:
    """Every proxy has acknowledged the config istiod last sent (no STALE, NOT_SENT or ERROR)."""
    proxies = proxy_sync()
    stale = sorted(name for name, types in proxies.items() if any(state != "SYNCED" for state in types.values()))
    found = [(not stale, f"proxies: {len(proxies)} connected to istiod, {len(stale)} out of sync",
              "python -m msalab istioctl -- proxy-status; restart what is stale: "
              "python -m msalab kubectl -- rollout restart deployment -n NAMESPACE")]
    return found + [(False, f"proxy {name} is out of sync: {proxies[name]}", f"python -m msalab istioctl -- proxy-status {name}")
                    for name in stale]


def _pods_missing_sidecars() -> list[tuple[bool, str, str]]:
    """Pods in namespaces labelled for injection that have no proxy: created before the label
    (injection happens only when a pod is created)."""
    from ..workshop import mode

    if mode.namespace():  # a student sees only their own namespace inside the mesh
        namespaces = [f"namespace/{mode.mesh_namespace()}"]
    else:
        namespaces = _kubectl("get", "namespaces", "-l", "istio-injection=enabled", "-o", "name").split()
    findings = []
    for namespace in (name.split("/", 1)[1] for name in namespaces):
        pods = _kubectl("get", "pods", "-n", namespace, "-o",
                        "jsonpath={range .items[*]}{.metadata.name} {.spec.initContainers[*].name} {.spec.containers[*].name}{'\\n'}{end}")
        bare = [line.split()[0] for line in pods.splitlines() if line.strip() and "istio-proxy" not in line.split()[1:]]
        findings.append((not bare, f"namespace {namespace}: injection on, {len(bare)} pod(s) without a sidecar",
                         f"python -m msalab kubectl -- rollout restart deployment -n {namespace}"))
    return findings
