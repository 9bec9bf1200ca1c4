"""python -m msalab workshop up|status|down|reset: a classroom on one Kubernetes cluster.

`up` deploys JupyterHub with KubeSpawner (cluster/workshop/hub.yaml, jupyterhub_config.py):
one hub pod (the hub, configurable-http-proxy, the idle culler, the progress board), and for
each student who logs in, a namespace with their server, account, quota, limits and network
policy (cluster/workshop/student.yaml). Everything carries the label
app.kubernetes.io/part-of=msalab-workshop, which is how `down` finds it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import time
import urllib.error
import urllib.request
from typing import NamedTuple

import yaml

from .. import paths
from ..cluster import external, hostpaths, manage, mesh
from ..errors import LabError
from . import images, netpol

WORKSHOP = paths.REPO / "cluster" / "workshop"
LABEL = "app.kubernetes.io/part-of=msalab-workshop"
INSTRUCTOR = "instructor"
NAME = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,18}[a-z0-9]$")  # = jupyterhub_config.NAME: it names a namespace
HOST_VOLUME = hostpaths.WORKSHOP_VOLUMES / "hub"  # the hub's volume on the course cluster's node
HOME_VOLUMES = hostpaths.WORKSHOP_VOLUMES / "homes"  # the students' homes there: one folder per seat
HOME_CLASS = "msalab-workshop-home"  # the storageClassName that binds a student's claim to a seat's folder
HUB_UID = 10001
STUDENT_UID = 1000  # the lab image's user (cluster/workshop/lab.Dockerfile)
INERT_PROVISIONER = "kubernetes.io/host-path"
POD_CIDR_VARIABLE = "MSALAB_POD_CIDR"
MESH_SUFFIX = "--mesh"  # a student's namespace inside the mesh: ws-NAME--mesh (no name holds "--")
SYSTEM_RESERVE = {"cpu_m": 100, "memory_mi": 256}  # room left for the cluster's own bursts
HUB_NEEDS = {"cpu_m": 100 + 10 + 25, "memory_mi": 256 + 32 + 64}  # the hub pod, kubelet-metrics, kube-network-policies


def spec() -> dict:
    return paths.versions()["workshop"]


# --- sizing ----------------------------------------------------------------------------------

def _cpu_m(text: str) -> int:
    from kubernetes.utils import parse_quantity
    return int(parse_quantity(text) * 1000)


def _memory_mi(text: str) -> int:
    from kubernetes.utils import parse_quantity
    return int(parse_quantity(text) / 2 ** 20)


def _requests(pods: dict) -> dict:
    return {"cpu_m": _cpu_m(pods["cpu_request"]), "memory_mi": _memory_mi(pods["memory_request"])}


def lab_needs(meshed: bool = False) -> dict:
    """The requests of one lab's pods at most: a Part III lab's, or with the mesh (meshed) the
    larger of that and a Part IV lab's, sidecars included. One lab runs at a time."""
    own, mesh_lab = _requests(spec()["lab_pods"]), _requests(spec()["mesh_lab_pods"])
    return {k: max(own[k], mesh_lab[k]) for k in own} if meshed else own


def per_student(meshed: bool = False) -> dict:
    """What one student needs reserved (requests): their server, and the pods of one lab."""
    server, lab = _requests(spec()["server"]), lab_needs(meshed)
    return {k: server[k] + lab[k] for k in server}


def capacity(cluster, meshed: bool = False) -> dict:
    """Free room on the cluster (allocatable less what running pods outside the workshop
    request, less a reserve and the hub) and how many students that holds."""
    nodes = cluster.core.list_node().items
    allocatable = {"cpu_m": sum(_cpu_m(n.status.allocatable["cpu"]) for n in nodes),
                   "memory_mi": sum(_memory_mi(n.status.allocatable["memory"]) for n in nodes)}
    used = {"cpu_m": 0, "memory_mi": 0}
    for pod in cluster.core.list_pod_for_all_namespaces().items:
        labels = pod.metadata.labels or {}
        if pod.status.phase in ("Succeeded", "Failed") or labels.get("app.kubernetes.io/part-of") == "msalab-workshop" \
                or pod.metadata.namespace == spec()["namespace"] \
                or pod.metadata.namespace.startswith(spec()["student_namespace_prefix"]):
            continue
        for container in pod.spec.containers:
            requests = (container.resources.requests or {}) if container.resources else {}
            used["cpu_m"] += _cpu_m(requests.get("cpu", "0"))
            used["memory_mi"] += _memory_mi(requests.get("memory", "0"))
    free = {k: allocatable[k] - used[k] - SYSTEM_RESERVE[k] - HUB_NEEDS[k] for k in allocatable}
    need = per_student(meshed)
    fits = max(0, min(free[k] // need[k] for k in need))
    return {"allocatable": allocatable, "requested_by_others": used, "free": free, "per_student": need, "max_students": fits}


def check_capacity(cluster, students: int, meshed: bool = False) -> dict:
    """The capacity, or LabError saying how many students fit and why (meshed: Part IV's labs too)."""
    room = capacity(cluster, meshed)
    if students > room["max_students"]:
        need, free = room["per_student"], room["free"]
        raise LabError(f"this cluster can hold {room['max_students']} student(s), not {students}: each needs "
                       f"{need['cpu_m']}m CPU and {need['memory_mi']} MiB reserved (their server and one lab's pods), and "
                       f"{free['cpu_m']}m CPU and {free['memory_mi']} MiB are free",
                       f"python -m msalab workshop up --students {room['max_students']}, or add nodes "
                       "(the instructors' guide: Sizing)")
    return room


def quota_values(room: dict, students: int) -> dict:
    """Each student's quota, for their labs' pods (their server runs in the hub's namespace): an
    equal share of the free room less the server, at least one lab's requests and at most twice
    them; limits up to one lab's limits. Their namespace inside the mesh gets the same, sized
    for a Part IV lab (mesh_quota_*)."""
    serving = _requests(spec()["server"])
    share = {k: room["free"][k] // students - serving[k] for k in serving}

    def bounded(need: dict, key: str) -> int:
        return min(max(share[key], need[key]), 2 * need[key])
    own, meshed = _requests(spec()["lab_pods"]), _requests(spec()["mesh_lab_pods"])
    return {"quota_cpu_request": f"{bounded(own, 'cpu_m')}m", "quota_memory_request": f"{bounded(own, 'memory_mi')}Mi",
            "quota_memory_limit": f"{_memory_mi(spec()['lab_pods']['memory_limit'])}Mi", "quota_pods": "20",
            "mesh_quota_cpu_request": f"{bounded(meshed, 'cpu_m')}m",
            "mesh_quota_memory_request": f"{bounded(meshed, 'memory_mi')}Mi"}


# --- the cluster side ------------------------------------------------------------------------

def validate(students: int, users: list[str]) -> None:
    if users:
        bad = [u for u in users if not NAME.match(u) or u == INSTRUCTOR]
        if bad:
            raise LabError(f"not a student name: {', '.join(bad)} (2 to 20 lower-case letters, digits or dashes, "
                           f"starting with a letter; not {INSTRUCTOR!r})", "python -m msalab workshop up --users ann,bob,...")
        if students and students != len(users):
            raise LabError(f"--students {students} but {len(users)} names in --users", "give one of the two")
    elif students < 1:
        raise LabError(f"--students must be 1 or more, not {students}", "python -m msalab workshop up --students 3")


def is_running(cluster) -> bool:
    return bool(cluster.kubectl("get", "deployment", "hub", "-n", spec()["namespace"], "--ignore-not-found", "-o", "name",
                                check=False).strip())


def _provider() -> str | None:
    from ..cluster import manage
    return manage.current_provider()


class Storage(NamedTuple):
    hub_claim_line: str  # the hub's claim's storageClassName line ('' for the default class)
    volumes: str         # PersistentVolumes to apply: the course cluster's folders ('' elsewhere)
    home_class: str      # the students' homes' storageClassName ('' for the default class)


def uses_node_folders(cluster) -> bool:
    """Whether the hub's volume and the homes are folders on the course cluster's node: it has no
    default StorageClass that provisions (else LabError on a cluster of one's own)."""
    classes = cluster.kubectl("get", "storageclass", "-o", "json", check=False)
    # kind's fallback class names the in-tree host-path provisioner, which the controller
    # manager runs only with a test flag: a claim on it stays Pending forever.
    default = [c for c in (json.loads(classes)["items"] if classes.strip() else [])
               if (c["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
               and c.get("provisioner") != INERT_PROVISIONER]
    if default:
        return False
    if _provider() not in ("offline", "kind"):
        raise LabError("this cluster has no default StorageClass for the hub's volume and the students' homes",
                       "create a default StorageClass (annotation storageclass.kubernetes.io/is-default-class: "
                       "\"true\"), then rerun python -m msalab workshop up")
    return True


def _storage(cluster, students: int) -> Storage:
    """The hub's volume and the students' homes: claims on the cluster's default StorageClass
    where it has one; else folders on the course cluster's node, one for the hub and one per seat."""
    if not uses_node_folders(cluster):
        return Storage("", "", "")
    check_node_disk(students)
    # hostPath does not honour fsGroup: each folder is made for its user here.
    manage.node_shell(f"mkdir -p {HOST_VOLUME} && chown {HUB_UID}:{HUB_UID} {HOST_VOLUME} && chmod 700 {HOST_VOLUME}")
    seats = " ".join(str(HOME_VOLUMES / f"seat-{seat}") for seat in range(1, students + 1))
    manage.node_shell(f"mkdir -p {seats} && chown {STUDENT_UID}:{STUDENT_UID} {seats} && chmod 700 {seats}")
    volumes = [_host_volume("msalab-workshop-hub", HOST_VOLUME, "1Gi", "", f"{spec()['namespace']}/hub-db")]
    volumes += [_host_volume(f"{HOME_CLASS}-{seat}", HOME_VOLUMES / f"seat-{seat}", spec()["home_size"], HOME_CLASS)
                for seat in range(1, students + 1)]
    return Storage('storageClassName: ""\n  volumeName: msalab-workshop-hub', "\n---\n".join(volumes), HOME_CLASS)


def _host_volume(name: str, folder, size: str, storage_class: str, claim: str = "") -> str:
    """A PersistentVolume on a folder of the node. A seat's (no claim named) binds to the first
    student's claim of its class; students cannot claim one (their quota allows no claims)."""
    namespace, _, claim_name = claim.partition("/")
    claim_ref = f"\n  claimRef: {{namespace: {namespace}, name: {claim_name}}}" if claim else ""
    return f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}, labels: {{app.kubernetes.io/part-of: msalab-workshop}}}}
spec:
  capacity: {{storage: {size}}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: "{storage_class}"{claim_ref}
  hostPath: {{path: {folder}, type: Directory}}
"""


def check_node_disk(students: int) -> None:
    """The node's disk must hold every seat's home at its full size (a folder enforces no size)."""
    need = students * _memory_mi(spec()["home_size"]) + 1024  # and the hub's volume
    # The nearest existing folder: the workshop's own is made below.
    free = manage.node_shell(f"d={HOST_VOLUME.parent}; while [ ! -d $d ]; do d=$(dirname $d); done; df -Pm $d | tail -1")
    free_mib = int(free.split()[3])
    if free_mib < need:
        raise LabError(f"the cluster's node has {free_mib} MiB of disk free, and {students} student(s) need {need} MiB "
                       f"for their homes ({spec()['home_size']} each) and the hub's volume",
                       "free disk space on the node, or python -m msalab workshop up with fewer students")


def _pod_cidr(cluster) -> str:
    """The pod network: MSALAB_POD_CIDR where set, else one range holding every node's pod
    range (the course's clusters: 10.244.0.0/16). The students' NetworkPolicy lets in every
    address outside it, so a wrong range would let other students in: every running pod's
    address is checked against it, and a range that misses one stops `up`."""
    import ipaddress

    fix = f"export {POD_CIDR_VARIABLE}=<the range your network plugin gives pods, e.g. 10.0.0.0/14>; then rerun the same command"
    given = os.environ.get(POD_CIDR_VARIABLE, "").strip()
    if given:
        try:
            network = ipaddress.ip_network(given, strict=False)
        except ValueError as err:
            raise LabError(f"{POD_CIDR_VARIABLE}={given!r} is not an address range ({err})", fix) from err
    else:
        cidrs = [ipaddress.ip_network(n.spec.pod_cidr) for n in cluster.core.list_node().items
                 if n.spec.pod_cidr and ":" not in n.spec.pod_cidr]
        if not cidrs and _provider() == "external":
            raise LabError("the cluster's nodes do not say which addresses its pods get", fix)
        network = ipaddress.ip_network(paths.versions()["cluster"]["kind"]["course_node"]["pod_subnet"])
        if cidrs:
            network = cidrs[0].supernet(new_prefix=min(16, cidrs[0].prefixlen))
            while not all(c.subnet_of(network) for c in cidrs):
                network = network.supernet()
    if network.version != 4 or network.prefixlen == 0:
        raise LabError(f"the pod network {network} cannot be told apart from other addresses by an IPv4 NetworkPolicy "
                       "(IPv6, or every address)", fix)
    outside = _pods_outside(cluster, network)
    if outside:
        raise LabError(f"pods have addresses outside the pod network {network} (for one, {', '.join(outside[:3])}): "
                       "the students' NetworkPolicy would let them in", fix)
    return str(network)


def _pods_outside(cluster, network) -> list[str]:
    """'namespace/pod ip' of running pods (not on the host's network) whose address is outside network."""
    import ipaddress

    found = []
    for pod in cluster.core.list_pod_for_all_namespaces().items:
        ip = pod.status.pod_ip
        if ip and ":" not in ip and not pod.spec.host_network and ipaddress.ip_address(ip) not in network:
            found.append(f"{pod.metadata.namespace}/{pod.metadata.name} {ip}")
    return found


def _ingress_class(cluster) -> str:
    """The course cluster's Contour, by name; elsewhere the cluster's default IngressClass (an
    Ingress without a class is served only by a default one)."""
    found = cluster.kubectl("get", "ingressclass", "-o", "json", check=False)
    classes = json.loads(found)["items"] if found.strip() else []
    if any(c["metadata"]["name"] == "contour" for c in classes):
        return "ingressClassName: contour"
    if not any((c["metadata"].get("annotations") or {}).get("ingressclass.kubernetes.io/is-default-class") == "true"
               for c in classes):
        raise LabError("this cluster has no default IngressClass, so nothing would serve the hub's Ingress",
                       "install an Ingress controller and mark its class the default (annotation "
                       "ingressclass.kubernetes.io/is-default-class: \"true\"), then rerun the same command")
    return ""


def _check_architecture(cluster) -> None:
    """The images are built for this machine's engine: nodes of another architecture could not run them."""
    from .. import images as course_images

    built = {"x86_64": "amd64", "aarch64": "arm64"}[course_images.engine_arch()]
    other = sorted({n.status.node_info.architecture for n in cluster.core.list_node().items} - {built})
    if other:
        raise LabError(f"the cluster's nodes are {', '.join(other)}, and the course's images are built here for {built}",
                       f"run python -m msalab workshop up on a {other[0]} machine (the images are built where it runs)")


def _node_address(cluster) -> str:
    """The first node's InternalIP: on the course cluster (one node) its Ingress and Gateway
    ports answer pods there."""
    for node in cluster.core.list_node().items:
        for address in node.status.addresses or []:
            if address.type == "InternalIP":
                return address.address
    return ""


def _node_address_rules(cluster) -> str:
    """NetworkPolicy `from` entries for the nodes' own addresses: the API server's service proxy
    and the kubelet reach pods from them, and on the course cluster they are inside the pod
    network (the offline node is its bridge's 10.244.0.1; kind's node reaches its pods from its
    bridge's first address)."""
    import ipaddress

    addresses = set()
    for node in cluster.core.list_node().items:
        addresses |= {a.address for a in node.status.addresses or [] if a.type == "InternalIP"}
        if node.spec.pod_cidr:
            addresses.add(str(next(ipaddress.ip_network(node.spec.pod_cidr).hosts())))
    return "\n".join(f"        - ipBlock: {{cidr: {address}/32}}" for address in sorted(addresses) if ":" not in address)


def _hub_env(values: dict) -> str:
    lines = [f"            - {{name: WORKSHOP_{key.upper()}, value: {json.dumps(str(value))}}}" for key, value in values.items()]
    return "\n".join(lines)


def _manifests(cluster, values: dict, passwords: dict, hub_image: str, storage: Storage,
               ingress_class_line: str) -> str:
    from ..cluster import offline
    hub = offline.fill((WORKSHOP / "hub.yaml").read_text(), {
        "namespace": spec()["namespace"], "host": values["host"], "hub_image": hub_image,
        "password": json.dumps(passwords["password"]), "admin_password": json.dumps(passwords["admin_password"]),
        "cli_token": passwords["cli_token"],
        "storage_class_line": storage.hub_claim_line, "env": _hub_env(values), "ingress_class_line": ingress_class_line,
        "student_prefix": spec()["student_namespace_prefix"]})
    config = cluster.kubectl("create", "configmap", "hub-config", "-n", spec()["namespace"], "--dry-run=client", "-o", "yaml",
                             f"--from-file={WORKSHOP / 'jupyterhub_config.py'}", f"--from-file={WORKSHOP / 'student.yaml'}",
                             f"--from-file={WORKSHOP / 'student-mesh.yaml'}")
    config = yaml.safe_load(config)
    config["metadata"]["labels"] = {"app.kubernetes.io/part-of": "msalab-workshop"}
    config = yaml.safe_dump(config)
    # Part IV: the students' tracing providers (hub-mesh.yaml), where the mesh is installed.
    meshed = offline.fill((WORKSHOP / "hub-mesh.yaml").read_text(), {
        "namespace": spec()["namespace"], "student_prefix": spec()["student_namespace_prefix"]}) if values["mesh_suffix"] else ""
    return "\n---\n".join(part for part in (hub, storage.volumes, config, meshed) if part)


# --- up, status, down ------------------------------------------------------------------------

def _step(number: int, text: str) -> float:
    print(f"[{number}/6] {text}", flush=True)
    return time.monotonic()


def up(students: int = 0, users: list[str] | None = None, password: str | None = None,
       host: str | None = None) -> dict:
    from ..cluster import manage
    from ..k8s import Cluster

    users = users or []
    validate(students, users)
    students = students or len(users)
    cluster = Cluster()
    if _provider() == "external" and host is None:  # localhost means the course cluster's Ingress port here
        raise LabError("on a cluster of your own, the hub needs a host name that reaches its Ingress controller",
                       "python -m msalab workshop up --students N --host workshop.example.com")
    if is_running(cluster):
        raise LabError(f"a workshop is already running on this cluster (namespace {spec()['namespace']})",
                       "python -m msalab workshop status; to start anew: python -m msalab workshop down")
    _step(1, f"room for {students} student(s)")
    mesh_on = mesh.installed()
    if mesh_on and not mesh.reads_shared_config():
        raise LabError("the mesh was installed before the course gave istiod a second mesh config "
                       f"({mesh.SHARED_MESH_CONFIG}), where the workshop adds each student's tracing provider",
                       "python -m msalab mesh install   (updates it in place), then workshop up again")
    room = check_capacity(cluster, students, meshed=mesh_on)
    print(f"      {room['max_students']} would fit: {room['free']['cpu_m']}m CPU and {room['free']['memory_mi']} MiB free, "
          f"{room['per_student']['cpu_m']}m and {room['per_student']['memory_mi']} MiB each", flush=True)
    # What the cluster must offer, checked before any image is built or pushed.
    pod_cidr = _pod_cidr(cluster)
    print(f"      pod network {pod_cidr}: every running pod's address is inside it", flush=True)
    _check_architecture(cluster)
    storage = _storage(cluster, students)
    ingress_class_line = _ingress_class(cluster)
    print(f"      Part IV: {'each student also gets a namespace inside the mesh' if mesh_on else 'no mesh installed'} "
          f"({'' if mesh_on else 'python -m msalab mesh install, then workshop up, gives them one; '}the instructors' guide: Part IV)",
          flush=True)
    _step(2, "the images: hub and students' servers (built here, cached)")
    hub_image, lab_image = images.build_hub_image(), images.build_lab_image()
    # Part IV: Lab IV.5's Prometheus, Jaeger and Loki, as the lab finds them on this machine
    # (a student's server can neither build nor load an image).
    components = _lab_components() if mesh_on else {}
    if _provider() in ("offline", "kind"):
        manage.load_images([hub_image, lab_image, *components.values()])
    elif _provider() == "external":  # its nodes pull from the registry, the students' shop too
        from .. import images as course_images
        pushed = external.push_images([hub_image, lab_image, course_images.build_shop_image(), *components.values()])
        print("      pushed: " + ", ".join(pushed), flush=True)
        hub_image, lab_image = external.image_ref(hub_image), external.image_ref(lab_image)
    _step(3, "NetworkPolicy enforcement (msalab.workshop.netpol)")
    if _provider() in ("offline", "kind") and not netpol.is_installed(cluster):
        netpol.install(cluster)
    passwords = {"password": password or secrets.token_urlsafe(9), "admin_password": secrets.token_urlsafe(33),
                 "cli_token": secrets.token_hex(32)}
    if len(passwords["password"]) < 8:
        raise LabError("the workshop password must have 8 characters or more", "python -m msalab workshop up --password ...")
    values = {"namespace": spec()["namespace"], "students": students, "users": ",".join(users),
              "instructor": INSTRUCTOR, "student_prefix": spec()["student_namespace_prefix"], "host": host or spec()["host"],
              "lab_image": lab_image, "pod_cidr": pod_cidr, "idle_timeout_s": spec()["idle_timeout_s"],
              "hub_namespace": spec()["namespace"], "node_address_rules": _node_address_rules(cluster),
              "node_address": _node_address(cluster), "registry": external.registry(),
              "mesh_suffix": MESH_SUFFIX if mesh_on else "", "lab_images": json.dumps(components),
              "home_size": spec()["home_size"], "home_storage_class": storage.home_class,
              **{f"server_{k}": v for k, v in spec()["server"].items()}, **quota_values(room, students)}
    values["server_cpu_request"] = _cpu_m(values["server_cpu_request"]) / 1000
    values["server_cpu_limit"] = _cpu_m(values["server_cpu_limit"]) / 1000
    _step(4, f"the hub in namespace {spec()['namespace']}")
    cluster.kubectl("apply", "-f", "-", input_text=_manifests(cluster, values, passwords, hub_image, storage, ingress_class_line))
    _step(5, "waiting for the hub to be ready")
    cluster.wait_rollout(spec()["namespace"], "hub", timeout_s=300)
    cluster.wait_rollout(spec()["namespace"], "kubelet-metrics", timeout_s=120)
    _step(6, "the hub answers through the Ingress")
    url = hub_url(values["host"])
    cluster.wait_until(lambda: _get(url + "/hub/health", values["host"]) == 200, f"the hub at {url}", 60)
    print(f"\nworkshop up: {students} seat(s) at {url}/\n  students: any name, password {passwords['password']}\n"
          f"  instructor: name {INSTRUCTOR}, password {passwords['admin_password']}\n"
          f"  the board: {url}/services/board/   (python -m msalab workshop status --passwords shows these again)")
    return {"url": url, "students": students, **passwords, "host": values["host"]}


def _lab_components() -> dict[str, str]:
    """name -> image of the components Lab IV.5 deploys (built here where they cannot be pulled)."""
    from .. import images as course_images
    from ..mesh import TELEMETRY

    return {name: course_images.component_image(name)[0] for name in TELEMETRY}


def hub_url(host: str | None = None, cluster=None) -> str:
    """The hub through the cluster's Ingress: on the course cluster, Contour's port on this
    machine. The host is the running workshop's (`up --host`), else the default."""
    from ..k8s import ingress_url
    if host is None and cluster is not None:
        host = next((e["value"] for e in _hub_container(cluster)["env"] if e["name"] == "WORKSHOP_HOST"), None)
    host = host or spec()["host"]
    return ingress_url().replace("127.0.0.1", host) if host == "localhost" else f"http://{host}"


def _get(url: str, host: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def passwords(cluster) -> dict:
    """The workshop's passwords and the CLI's hub token, from its Secret (kept nowhere else)."""
    import base64
    data = json.loads(cluster.kubectl("get", "secret", "hub-secrets", "-n", spec()["namespace"], "-o", "json"))["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def hub_api(cluster, method: str, path: str, body: dict | None = None) -> dict | list | None:
    """The hub's REST API with the CLI's token (the msalab-cli service: admin of users and servers)."""
    token = passwords(cluster)["cli-token"]
    request = urllib.request.Request(hub_url(cluster=cluster) + "/hub/api" + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        raise LabError(f"the hub answered {err.code} to {method} {path}: {err.read()[:300]!r}",
                       "python -m msalab workshop status") from err
    except OSError as err:
        raise LabError(f"the hub does not answer at {hub_url(cluster=cluster)} ({err})",
                       "python -m msalab kubectl -- get pods -n msalab-workshop; the cluster's Ingress must be up") from err


def status() -> dict:
    from ..k8s import Cluster
    cluster = Cluster()
    if not is_running(cluster):
        return {"running": False}
    pods = json.loads(cluster.kubectl("get", "pods", "-n", spec()["namespace"], "-l", "component=singleuser-server",
                                      "-o", "json"))["items"]
    servers = {p["metadata"]["labels"].get("msalab.dev/student"): p["status"].get("phase") for p in pods}
    users = hub_api(cluster, "GET", "/users") or []
    students = {u["name"]: {"server": "ready" if (u.get("servers") or {}).get("", {}).get("ready") else "stopped",
                            "namespace": spec()["student_namespace_prefix"] + u["name"],
                            "pod": servers.get(u["name"], "-")}
                for u in users if u["name"] != INSTRUCTOR}
    seats = next((e["value"] for e in _hub_container(cluster)["env"] if e["name"] == "WORKSHOP_STUDENTS"), "?")
    info = {"running": True, "url": hub_url(cluster=cluster), "seats": int(seats), "students": students,
            "capacity": capacity(cluster)}
    homes = _seats(cluster)
    if homes:  # the course cluster: a folder per seat
        info["homes"] = seat_report(homes)
    return info


def seat_report(seats: list[dict]) -> dict:
    """How the seats' home volumes stand; one a deleted student left Released holds a seat
    until `reset` empties it (a student deleted on the hub's admin page)."""
    phases = [(seat.get("status") or {}).get("phase") for seat in seats]
    report = {"seats": len(seats), "in use": phases.count("Bound"), "free": phases.count("Available")}
    left = sorted(seat["spec"]["claimRef"]["name"].removeprefix("home-") for seat, phase in zip(seats, phases)
                  if phase == "Released")
    if left:
        report["held by deleted students"] = left
        report["fix"] = "python -m msalab workshop reset NAME, for each name above"
    return report


def _hub_container(cluster) -> dict:
    deployment = json.loads(cluster.kubectl("get", "deployment", "hub", "-n", spec()["namespace"], "-o", "json"))
    return deployment["spec"]["template"]["spec"]["containers"][0]


def reset(student: str) -> list[str]:
    """One student back to new: their server stopped, their home and their namespaces (and
    everything a lab made there) deleted, their seat freed. Their board rows stay: they are the
    class's record. Also cleans up after a student deleted on the hub's admin page (whose home's
    volume would otherwise keep its seat)."""
    from ..k8s import Cluster
    cluster = Cluster()
    if not NAME.match(student):
        raise LabError(f"not a student name: {student!r}", "python -m msalab workshop status lists them")
    namespace = spec()["student_namespace_prefix"] + student
    known = student in (u["name"] for u in hub_api(cluster, "GET", "/users") or [])
    if not known and not (_seats(cluster, released_by=home_claim(student))
                          or cluster.kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name").strip()):
        raise LabError(f"no student {student!r} in this workshop", "python -m msalab workshop status lists them")
    home = _claim(cluster, student)  # read before the hub deletes it: which claim, bound to which volume
    removed = []
    if known:
        stop_server(cluster, student)
        hub_api(cluster, "DELETE", f"/users/{student}")  # KubeSpawner deletes their home's claim too
        removed += [f"server of {student}", f"user {student}"]
    cluster.kubectl("delete", "secret", f"student-token-{student}", "-n", spec()["namespace"], "--ignore-not-found")
    _free_home(cluster, student, home)
    cluster.kubectl("delete", "namespace", namespace, namespace + MESH_SUFFIX, "--ignore-not-found", "--wait=true",
                    "--timeout=180s")
    cluster.kubectl("delete", "clusterrolebinding", f"msalab-workshop-nodes-{student}", "--ignore-not-found")
    cluster.kubectl("delete", "rolebinding", f"msalab-workshop-{student}", "-n", mesh.SYSTEM_NAMESPACE, "--ignore-not-found",
                    check=False)
    _forget_tracing_provider(cluster, namespace + MESH_SUFFIX)
    return removed + [f"home of {student}", f"namespace {namespace}"]


def stop_server(cluster, student: str) -> None:
    """The student's server stopped through the hub (as the admin page's Stop Server does)."""
    hub_api(cluster, "DELETE", f"/users/{student}/server")
    cluster.wait_until(lambda: not (hub_api(cluster, "GET", f"/users/{student}") or {}).get("servers"),
                       f"{student}'s server to stop", 120)


def home_claim(student: str) -> str:
    return f"home-{student}"  # = jupyterhub_config.py's pvc_name_template


def _claim(cluster, student: str):
    """The student's home's claim (its uid names this one claim, not a later one of the same name), or None."""
    return _read_claim(cluster, home_claim(student))


def _read_claim(cluster, name: str):
    from kubernetes.client.exceptions import ApiException
    try:
        return cluster.core.read_namespaced_persistent_volume_claim(name, spec()["namespace"])
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _seats(cluster, released_by: str | None = None) -> list[dict]:
    """The seats' volumes `up` made on the course cluster's node; with released_by, only those a
    deleted claim of that name left Released (their folder still holds its student's files)."""
    volumes = json.loads(cluster.kubectl("get", "pv", "-l", LABEL, "-o", "json"))["items"]
    seats = [v for v in volumes if v["spec"].get("storageClassName") == HOME_CLASS
             and (v["spec"].get("hostPath") or {}).get("path", "").startswith(f"{HOME_VOLUMES}/")]
    if released_by is None:
        return seats
    return [v for v in seats if (v.get("status") or {}).get("phase") == "Released"
            and (v["spec"].get("claimRef") or {}).get("name") == released_by]


def _free_home(cluster, student: str, home) -> None:
    """The student's home deleted: its claim (KubeSpawner's, when the hub deleted the user), and
    on the course cluster its seat emptied and free again (a volume kept when its claim goes
    stays Released until it is). Only that claim's volume is touched, once Released: a claim of
    the same name made since (the student logged in again) and its volume are left alone.
    Without a claim (deleted on the hub's admin page), the seats its name left Released."""
    if home is None:
        for seat in _seats(cluster, released_by=home_claim(student)):
            _free_seat(cluster, seat)
        return
    _delete_claim(cluster, home)
    name, uid, volume = home.metadata.name, home.metadata.uid, home.spec.volume_name
    if volume not in {s["metadata"]["name"] for s in _seats(cluster)}:
        return  # the default StorageClass's volume: its reclaim policy deletes it

    def released() -> list[dict]:
        return [s for s in _seats(cluster, released_by=name)
                if s["metadata"]["name"] == volume and s["spec"]["claimRef"].get("uid") == uid]
    cluster.wait_until(lambda: bool(released()), f"{student}'s home's volume {volume} to be released", 60)
    _free_seat(cluster, released()[0])


def _delete_claim(cluster, home) -> None:
    """That claim (by uid) deleted, and gone."""
    from kubernetes.client import V1DeleteOptions, V1Preconditions
    from kubernetes.client.exceptions import ApiException

    namespace, name, uid = spec()["namespace"], home.metadata.name, home.metadata.uid
    try:
        cluster.core.delete_namespaced_persistent_volume_claim(
            name, namespace, body=V1DeleteOptions(preconditions=V1Preconditions(uid=uid)))
    except ApiException as err:
        if err.status not in (404, 409):  # gone already; or a newer claim of that name, left alone
            raise

    def gone() -> bool:
        now = _read_claim(cluster, name)
        return now is None or now.metadata.uid != uid
    cluster.wait_until(gone, f"the claim {name}", 120)


def _free_seat(cluster, seat: dict) -> None:
    """A Released seat: its folder emptied, then its claimRef removed (if still that claim's), so it binds the next claim."""
    manage.node_shell(f"find {shlex.quote(seat['spec']['hostPath']['path'])} -mindepth 1 -delete")
    patch = [{"op": "test", "path": "/spec/claimRef/uid", "value": seat["spec"]["claimRef"].get("uid")},
             {"op": "remove", "path": "/spec/claimRef"}]
    cluster.kubectl("patch", "pv", seat["metadata"]["name"], "--type=json", "-p", json.dumps(patch))


def _forget_tracing_provider(cluster, mesh_namespace: str) -> None:
    """The student's tracing provider out of the workshop's mesh config (hub-mesh.yaml), if there."""
    found = cluster.kubectl("get", "configmap", mesh.SHARED_MESH_CONFIG, "-n", mesh.SYSTEM_NAMESPACE,
                            "--ignore-not-found", "-o", "json", check=False)
    if not found.strip():
        return
    config_map = json.loads(found)
    config = yaml.safe_load(config_map["data"].get("mesh") or "") or {}
    kept = [p for p in config.get("extensionProviders") or [] if p.get("name") != mesh.student_tracing_provider(mesh_namespace)]
    if kept != (config.get("extensionProviders") or []):
        config_map["data"]["mesh"] = yaml.safe_dump({**config, "extensionProviders": kept})
        cluster.kubectl("replace", "-f", "-", input_text=json.dumps(config_map))


def down() -> list[str]:
    """Everything `up` and the hub created: students' namespaces first (their servers), then
    the hub (and the homes' claims), the cluster-wide objects, the volumes and their folders,
    kube-network-policies."""
    from ..k8s import Cluster
    cluster = Cluster()
    removed = []
    namespaces = cluster.kubectl("get", "namespaces", "-l", LABEL, "-o", "name", check=False).split()
    for namespace in namespaces:  # the students' and the hub's
        cluster.kubectl("delete", namespace, "--wait=true", "--timeout=180s", "--ignore-not-found")
        removed.append(namespace)
    # Part IV: the students' read access to the mesh's control plane (student-mesh.yaml), and the
    # hub's tracing providers with its right to write them (hub-mesh.yaml).
    removed += cluster.kubectl("delete", "rolebindings,roles,configmaps", "-n", mesh.SYSTEM_NAMESPACE, "-l", LABEL,
                               "--ignore-not-found", "-o", "name", check=False).split()
    for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies", "clusterrolebindings", "clusterroles",
                 "persistentvolumes"):
        gone = cluster.kubectl("delete", kind, "-l", LABEL, "--ignore-not-found", "-o", "name", check=False).split()
        removed += gone
    if _provider() in ("offline", "kind"):
        manage.node_shell(f"rm -rf {HOST_VOLUME.parent}")
        if netpol.is_installed(cluster):
            netpol.uninstall(cluster)
            removed.append("kube-network-policies")
    elif _provider() == "external":  # the registry keeps the images; this machine drops their tags
        from .. import images as course_images
        external.forget_pushed_tags([images.hub_ref(), images.lab_ref(), course_images.shop_ref()])
    return removed
