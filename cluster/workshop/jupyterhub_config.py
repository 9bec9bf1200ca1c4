# The workshop's JupyterHub (python -m msalab workshop up mounts this file from a ConfigMap).
# Everything that varies per workshop comes from the hub's environment (the Deployment in
# cluster/workshop/hub.yaml), so this file is the same for every class.
import asyncio
import os
import re
import string

import yaml
from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from kubernetes_asyncio import client as k8s
from kubelet_metrics import AUDIENCE as METRICS_AUDIENCE, PORT as METRICS_PORT  # beside the board, in /opt/services
from kubernetes_asyncio.client.rest import ApiException
from tornado import web

c = get_config()  # noqa: F821 (JupyterHub's config loader provides it)
env = os.environ
HUB_NAMESPACE = env["WORKSHOP_NAMESPACE"]
STUDENTS = int(env["WORKSHOP_STUDENTS"])
INSTRUCTOR = env["WORKSHOP_INSTRUCTOR"]
PREFIX = env["WORKSHOP_STUDENT_PREFIX"]
LISTED = {name for name in env.get("WORKSHOP_USERS", "").split(",") if name}
# A student's name becomes a namespace (ws-NAME): a DNS label, so lower case, digits and dashes.
# No trailing dash and no "--": KubeSpawner would hash such a name into its pod's labels.
NAME = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,18}[a-z0-9]$")


def refuse(message):
    """The hub's error page, with the reason (its login page can only say 'Invalid username or password')."""
    raise web.HTTPError(403, message)


class WorkshopAuthenticator(SharedPasswordAuthenticator):
    """The room's shared password plus a name the student chooses (or one of a list), for at
    most WORKSHOP_STUDENTS students; the instructor logs in with the admin password. Never open:
    a name beyond the class size is refused, with the reason on the login page."""

    async def authenticate(self, handler, data):
        name = (data or {}).get("username", "").strip().lower()
        if name != INSTRUCTOR and not NAME.match(name):
            refuse("Choose a name of 2 to 20 lower-case letters, digits or single dashes, starting with a "
                   "letter and not ending with a dash (it names your namespace).")
        if name != INSTRUCTOR and LISTED and name not in LISTED:
            refuse("This name is not on the class list: ask your instructor.")
        model = await super().authenticate(handler, {**data, "username": name})
        # Only a right password takes a seat, and a full room says so (not "invalid password").
        if model and name != INSTRUCTOR and not LISTED and not self._seat_for(handler.db, name):
            refuse(f"The workshop is full ({STUDENTS} students): ask your instructor, "
                   "or log in with the name you used before.")
        return model

    @staticmethod
    def _seat_for(db, name):
        """A known student keeps their seat; a new one needs a free seat."""
        from jupyterhub import orm
        students = [u.name for u in db.query(orm.User).all() if u.name != INSTRUCTOR]
        return name in students or len(students) < STUDENTS


c.JupyterHub.authenticator_class = WorkshopAuthenticator
c.SharedPasswordAuthenticator.user_password = env["WORKSHOP_PASSWORD"]
c.SharedPasswordAuthenticator.admin_password = env["WORKSHOP_ADMIN_PASSWORD"]
c.Authenticator.admin_users = {INSTRUCTOR}


def landing_page(handler):
    """The instructor lands on the admin page: they have no server (it would take a student's
    seat). Students go to their server ('' is JupyterHub's default)."""
    user = handler.current_user
    return "/hub/admin" if user is not None and user.name == INSTRUCTOR else ""


c.JupyterHub.default_url = landing_page
c.Authenticator.allow_all = True  # bounded by WorkshopAuthenticator: the class list or the class size
c.JupyterHub.template_vars = {"announcement_login": (
    "Log in with the name you choose for the day and the workshop's password. "
    f"Your name names your own namespace ({PREFIX}NAME); use the same name all day.")}

# The hub's database and cookie secret live on its volume, so a restarted hub keeps its users.
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.hub_bind_url = "http://:8081"
# The proxy and the hub's own services (the board, the idle culler) run in the hub's pod: they
# reach the hub over loopback, so a restarted hub answers through the proxy as soon as it
# listens, with no wait for its Service to list the new pod. Students' servers reach it
# through its Service.
c.JupyterHub.hub_connect_url = "http://127.0.0.1:8081"
c.Spawner.hub_connect_url = f"http://hub.{HUB_NAMESPACE}.svc.cluster.local:8081"
# configurable-http-proxy runs beside the hub in its pod (the hub starts it): one pod to
# restart, and the proxy's routes are rebuilt from the hub's database when it starts.
c.ConfigurableHTTPProxy.should_start = True
# A restarted hub (a new image, a crash) must not stop the students' servers: they keep running
# and the new hub finds them (KubeSpawner reads their pods), as in Zero to JupyterHub.
c.JupyterHub.cleanup_servers = False

# --- each student's server: the course's lab image, acting in the student's own namespace ----
# The server's pod runs in the hub's namespace, so the student's namespace holds only what the
# labs make (a lab that checks "no pod is left" sees none of the server), and the student's quota
# is the labs'. It acts as the ServiceAccount `student` of that namespace: before each start the
# hub asks the API server for a token of it (TokenRequest) and mounts it with the cluster's CA.
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = HUB_NAMESPACE
c.KubeSpawner.extra_labels = {"msalab.dev/student": "{username}"}  # what the network policies select
c.KubeSpawner.image = env["WORKSHOP_LAB_IMAGE"]
c.KubeSpawner.image_pull_policy = "IfNotPresent"  # loaded into the cluster by workshop up
c.KubeSpawner.cmd = ["start-lab"]
c.KubeSpawner.uid = 1000
c.KubeSpawner.gid = 1000
c.KubeSpawner.automount_service_account_token = False  # the hub namespace's account is not the student's
# The student's home is a volume of its own (a claim KubeSpawner makes at their first start), so
# a server stopped by the idle culler, the instructor or a full node starts again with the
# student's edits. On the course cluster the claim binds to a seat's folder on the node
# (WORKSHOP_HOME_STORAGE_CLASS, made by workshop up); elsewhere the cluster's default StorageClass
# makes it. Deleting the user (workshop reset) deletes the claim.
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.pvc_name_template = "home-{username}"
c.KubeSpawner.storage_capacity = env["WORKSHOP_HOME_SIZE"]
c.KubeSpawner.storage_class = env["WORKSHOP_HOME_STORAGE_CLASS"] or None  # None: the default class
c.KubeSpawner.storage_extra_labels = {"app.kubernetes.io/part-of": "msalab-workshop", "msalab.dev/student": "{username}"}
c.KubeSpawner.fs_gid = 1000  # a new volume of the default class is made writable for the student's group
c.KubeSpawner.volumes = [{"name": "student-token", "secret": {"secretName": "student-token-{username}"}},
                         {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
c.KubeSpawner.volume_mounts = [{"name": "student-token", "mountPath": "/var/run/secrets/msalab-workshop", "readOnly": True},
                               {"name": "home", "mountPath": "/home/student"}]
c.KubeSpawner.cpu_guarantee = float(env["WORKSHOP_SERVER_CPU_REQUEST"])
c.KubeSpawner.cpu_limit = float(env["WORKSHOP_SERVER_CPU_LIMIT"])
# JupyterHub writes binary units without the i (its M is Kubernetes' Mi).
c.KubeSpawner.mem_guarantee = env["WORKSHOP_SERVER_MEMORY_REQUEST"].replace("i", "")
c.KubeSpawner.mem_limit = env["WORKSHOP_SERVER_MEMORY_LIMIT"].replace("i", "")
c.KubeSpawner.start_timeout = 300
c.KubeSpawner.http_timeout = 120
c.KubeSpawner.environment = {
    "MSALAB_WORKSHOP_NAMESPACE": PREFIX + "{username}",  # msalab's workshop mode: labs deploy here
    # The state of Parts I and II's processes (the shop's databases, Prometheus', Loki's data)
    # lives as long as they do: on the server's own disk, not in the home that outlives it.
    "MSALAB_HOME": "/tmp/msalab",
    "MSALAB_CACHE": "/tmp/msalab/cache",
    "MSALAB_BOARD_URL": f"http://hub.{HUB_NAMESPACE}.svc.cluster.local:8000/services/board/",
    # Labs III.6 and IV.7: the kubelet's metrics of the student's own pods (hub.yaml: kubelet-metrics).
    "MSALAB_KUBELET_METRICS_URL": f"http://kubelet-metrics.{HUB_NAMESPACE}.svc.cluster.local:{METRICS_PORT}",
    "MSALAB_WORKSHOP_NODE_ADDRESS": env.get("WORKSHOP_NODE_ADDRESS", ""),  # the Ingress's and Gateway's ports
    "MSALAB_REGISTRY": env.get("WORKSHOP_REGISTRY", ""),  # a cluster of the instructor's: labs name images there
}
# Part IV: where the mesh was installed before `workshop up`, each student also has a namespace
# inside it (student-mesh.yaml), where the labs' meshed namespaces go.
MESH_SUFFIX = env.get("WORKSHOP_MESH_SUFFIX", "")
if MESH_SUFFIX:
    c.KubeSpawner.environment["MSALAB_WORKSHOP_MESH_NAMESPACE"] = PREFIX + "{username}" + MESH_SUFFIX
    # Lab IV.5's components' images, as JSON: its braces doubled, since KubeSpawner expands {name}s.
    c.KubeSpawner.environment["MSALAB_WORKSHOP_IMAGES"] = \
        env.get("WORKSHOP_LAB_IMAGES", "{}").replace("{", "{{").replace("}", "}}")
c.KubeSpawner.extra_pod_config = {"enableServiceLinks": False}
c.KubeSpawner.container_security_context = {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                            "capabilities": {"drop": ["ALL"]}}

STUDENT_OBJECTS = string.Template(open("/etc/jupyterhub/student.yaml").read())
MESH_OBJECTS = string.Template(open("/etc/jupyterhub/student-mesh.yaml").read())
CREATE = {  # kind -> (API class, create method, namespaced)
    "Namespace": (k8s.CoreV1Api, "create_namespace", False),
    "ServiceAccount": (k8s.CoreV1Api, "create_namespaced_service_account", True),
    "ResourceQuota": (k8s.CoreV1Api, "create_namespaced_resource_quota", True),
    "LimitRange": (k8s.CoreV1Api, "create_namespaced_limit_range", True),
    "RoleBinding": (k8s.RbacAuthorizationV1Api, "create_namespaced_role_binding", True),
    "ClusterRoleBinding": (k8s.RbacAuthorizationV1Api, "create_cluster_role_binding", False),
    "NetworkPolicy": (k8s.NetworkingV1Api, "create_namespaced_network_policy", True),
}
TOKEN_HOURS = 12  # a workshop day; a server started again gets a new token
# Part IV: each student's tracing provider, in the mesh config the hub may rewrite
# (cluster/workshop/hub-mesh.yaml says why). Its name is the one msalab.mesh gives Lab IV.5
# in the student's server.
SHARED_MESH_CONFIG = ("istio-system", "msalab-shared-mesh-config")
SHARED_MESH_CONFIG_LOCK = asyncio.Lock()  # one rewrite at a time; resourceVersion guards against others'


async def add_tracing_provider(api_client, mesh_namespace):
    """The student's provider: Jaeger's OTLP port in their mesh namespace (idempotent)."""
    provider = {"name": f"jaeger-otlp-{mesh_namespace}",
                "opentelemetry": {"service": f"jaeger.{mesh_namespace}.svc.cluster.local", "port": 4317}}
    core = k8s.CoreV1Api(api_client)
    namespace, name = SHARED_MESH_CONFIG
    async with SHARED_MESH_CONFIG_LOCK:
        for _ in range(5):
            config_map = await core.read_namespaced_config_map(name, namespace)
            mesh = yaml.safe_load((config_map.data or {}).get("mesh") or "") or {}
            providers = mesh.get("extensionProviders") or []
            if provider in providers:
                return
            mesh["extensionProviders"] = [p for p in providers if p.get("name") != provider["name"]] + [provider]
            config_map.data = {**(config_map.data or {}), "mesh": yaml.safe_dump(mesh)}
            try:  # the object read carries its resourceVersion: a concurrent change answers 409
                await core.replace_namespaced_config_map(name, namespace, config_map)
                return
            except ApiException as err:
                if err.status != 409:
                    raise
        raise RuntimeError(f"could not add {provider['name']} to {namespace}/{name}: it kept changing")


CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"  # the hub's own mount: the cluster's CA


async def create_student_objects(spawner):
    """Before a student's server starts: their namespace and its account, role binding, quota,
    limits and network policy (cluster/workshop/student.yaml; existing objects are kept), their
    namespace inside the mesh where there is one (student-mesh.yaml) and their tracing provider, then a
    fresh token of that account for the server (Secret student-token-NAME in the hub's namespace)."""
    name = spawner.user.name
    if name == INSTRUCTOR:
        raise web.HTTPError(403, "The instructor has no server of their own (it would take a student's seat and home): "
                                 "the admin page is /hub/admin, the board /services/board/.")
    namespace = PREFIX + name
    values = {key[len("WORKSHOP_"):].lower(): value for key, value in env.items() if key.startswith("WORKSHOP_")}
    text = STUDENT_OBJECTS.substitute(values, student=name, namespace=namespace)
    if MESH_SUFFIX:
        text += "\n---\n" + MESH_OBJECTS.substitute(values, student=name, namespace=namespace,
                                                   mesh_namespace=namespace + MESH_SUFFIX)
    api_client = spawner.api.api_client
    for doc in yaml.safe_load_all(text):
        api_class, method, namespaced = CREATE[doc["kind"]]
        api = api_class(api_client)
        target = doc["metadata"].get("namespace", namespace)  # the mesh's objects name their namespace
        try:
            await (getattr(api, method)(target, doc) if namespaced else getattr(api, method)(doc))
        except ApiException as err:
            if err.status != 409:  # already there: a student's second server
                raise
    if MESH_SUFFIX:
        try:
            await add_tracing_provider(api_client, namespace + MESH_SUFFIX)
        except (ApiException, RuntimeError) as err:  # Lab IV.5's traces only: the server still starts
            spawner.log.warning("no tracing provider for %s (Lab IV.5 will see no spans): %s; "
                                "python -m msalab workshop down, mesh install, workshop up", name, err)
    core = k8s.CoreV1Api(api_client)

    async def token_for(*audiences):  # none: the API server's own
        request = {"spec": {"expirationSeconds": TOKEN_HOURS * 3600, **({"audiences": list(audiences)} if audiences else {})}}
        return (await core.create_namespaced_service_account_token("student", namespace, request)).status.token

    # Two tokens of the student's account: the API server's, and one only the kubelet-metrics
    # service accepts (its audience), which crosses the pod network in plain HTTP: taken from
    # there, it is no use at the API server.
    token = await token_for()
    metrics_token = await token_for(METRICS_AUDIENCE)
    secret = {"metadata": {"name": f"student-token-{name}", "labels": {"app.kubernetes.io/part-of": "msalab-workshop",
                                                                      "msalab.dev/student": name}},
              "stringData": {"token": token, "kubelet-metrics-token": metrics_token, "ca.crt": open(CA).read(),
                             "namespace": namespace}}
    try:
        await core.create_namespaced_secret(HUB_NAMESPACE, secret)
    except ApiException as err:
        if err.status != 409:
            raise
        await core.replace_namespaced_secret(f"student-token-{name}", HUB_NAMESPACE, secret)


c.KubeSpawner.pre_spawn_hook = create_student_objects

# --- the idle culler and the progress board, as hub services ---------------------------------
c.JupyterHub.load_roles = [
    # Students reach the board (their own rows) and their servers report to it.
    {"name": "user", "scopes": ["self", "access:services!service=board"]},
    {"name": "server", "scopes": ["users:activity!user", "access:servers!server", "access:services!service=board"]},
    # python -m msalab workshop status and reset, from the instructor's machine.
    {"name": "msalab-cli", "services": ["msalab-cli"],
     "scopes": ["list:users", "read:users", "admin:users", "admin:servers", "read:servers"]},
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
]
c.JupyterHub.services = [
    {"name": "msalab-cli", "api_token": env["WORKSHOP_CLI_TOKEN"]},
    {"name": "idle-culler",
     "command": ["python3", "-m", "jupyterhub_idle_culler", f"--timeout={env['WORKSHOP_IDLE_TIMEOUT_S']}"]},
    {"name": "board", "url": "http://127.0.0.1:10101", "display": True, "oauth_no_confirm": True,
     "command": ["python3", "-m", "board"],
     "environment": {"MSALAB_BOARD_DB": env.get("WORKSHOP_BOARD_DB", "sqlite:////srv/jupyterhub/board.sqlite"),
                     "MSALAB_BOARD_INSTRUCTORS": INSTRUCTOR}},
]
