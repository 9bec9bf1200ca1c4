"""A classroom on the course cluster: `workshop up` with 3 students, each logged in through
the hub's real login form, each server running a Part III lab step in its own namespace,
the steps on the board, and the isolation between students tested with real requests. Lab III.6
runs whole in a server, its kubelet metrics from the workshop's kubelet-metrics service."""

from __future__ import annotations

import json
import time

import pytest
import requests

from msalab.errors import LabError
from msalab.workshop import client, deploy

pytestmark = pytest.mark.cluster

STUDENTS = ("ann", "bob", "cho")
PASSWORD = "room-42-password"
LAB = "part3/01-pods.ipynb"
PREFIX = deploy.spec()["student_namespace_prefix"]


@pytest.fixture(scope="module")
def workshop(cluster):
    if deploy.is_running(cluster):  # a run that was interrupted
        deploy.down()
    info = deploy.up(students=len(STUDENTS), password=PASSWORD)
    yield info
    removed = deploy.down()
    assert any(item.startswith("namespace/") for item in removed), removed
    left = cluster.kubectl("get", "namespaces,clusterroles,clusterrolebindings,persistentvolumes", "-l", deploy.LABEL,
                           "-o", "name")
    assert left.strip() == "", f"workshop down left: {left}"


@pytest.fixture(scope="module")
def students(workshop):
    """Each student logged in and their server started (in turn, as a room does)."""
    logged_in = {}
    for name in STUDENTS:
        student = client.Student(workshop["url"], name, PASSWORD)
        student.log_in()
        student.start_server()
        logged_in[name] = student
    return logged_in


def lab_code(cells: int = 4) -> str:
    """The first code cells of Lab III.1 (pods), exactly as learners run them."""
    return "\n".join(client.lab_cells(LAB, cells))


def test_bad_input_is_refused_with_the_fix(cluster, workshop):
    with pytest.raises(LabError, match="must be 1 or more"):
        deploy.up(students=0)
    with pytest.raises(LabError, match="can hold .* student"):
        deploy.check_capacity(cluster, 1000)
    with pytest.raises(LabError, match="MiB of disk free"):
        deploy.check_node_disk(1_000_000)  # a million homes: more than the node's disk holds
    with pytest.raises(LabError, match="already running"):
        deploy.up(students=2)


def test_each_student_runs_a_lab_step_in_their_own_namespace(cluster, students):
    for name, student in students.items():
        printed, error = student.run(lab_code())
        assert error is None, f"{name}: {error}\n{printed}"
        assert f"working in namespace {PREFIX}{name}" in printed, printed
        assert "✓ both containers of the pod are running and ready" in printed, printed
        pod = cluster.core.read_namespaced_pod("shop-pod", f"{PREFIX}{name}")
        assert pod.status.phase == "Running"


def test_the_steps_are_on_the_board(workshop, students):
    # The instructor's view: every student, on Lab III.1, its checks passed.
    instructor = client.Student(workshop["url"], deploy.INSTRUCTOR, workshop["admin_password"])
    instructor.log_in()
    summary = instructor.board("GET", "api/summary").json()
    assert set(summary["students"]) == set(STUDENTS), summary
    assert all(row["lab"] == "part3/01-pods" for row in summary["students"].values()), summary
    progress = summary["labs"]["part3/01-pods"]
    assert progress["steps"] >= 2 and set(progress["students"]) == set(STUDENTS), progress
    page = instructor.web.get(f"{workshop['url']}/services/board/", timeout=30)
    assert page.status_code == 200 and all(name in page.text for name in STUDENTS)


def test_the_instructor_lands_on_the_admin_page_and_takes_no_seat(cluster, workshop, students):
    """Logged in through the form, as a browser follows the redirects, the instructor lands on
    the admin page; a server of theirs is refused, so no seat's home goes to them."""
    url, web = workshop["url"], requests.Session()
    web.get(f"{url}/hub/login", timeout=30).raise_for_status()
    page = web.post(f"{url}/hub/login", timeout=60, data={"username": deploy.INSTRUCTOR, "password": workshop["admin_password"],
                                                           "_xsrf": web.cookies.get("_xsrf", "")})
    assert page.status_code == 200 and page.url == f"{url}/hub/admin", (page.status_code, page.url)
    reply = web.post(f"{url}/hub/api/users/{deploy.INSTRUCTOR}/server", timeout=60,
                     headers={"X-XSRFToken": web.cookies.get("_xsrf", "")})
    assert reply.status_code >= 400 and "no server of their own" in reply.text, (reply.status_code, reply.text[:300])
    namespace = deploy.spec()["namespace"]
    assert not cluster.kubectl("get", "pvc", deploy.home_claim(deploy.INSTRUCTOR), "-n", namespace, "--ignore-not-found",
                               "-o", "name").strip()
    assert not cluster.core.list_namespaced_pod(namespace, label_selector=f"msalab.dev/student={deploy.INSTRUCTOR}").items


def test_a_student_sees_only_their_own_rows(students):
    ann = students["ann"]
    own = ann.board("GET").json()["reports"]
    assert own and {row["student"] for row in own} == {"ann"}
    refused = ann.board("GET", params={"student": "bob"})
    assert refused.status_code == 403 and "only their own" in refused.json()["error"]
    assert ann.board("GET", "api/summary").status_code == 403
    page = ann.web.get(f"{ann.hub}/services/board/", timeout=30)
    assert page.status_code == 200 and "bob" not in page.text and "Your own checks only" in page.text


def test_a_report_with_a_wrong_token_is_refused(students):
    reply = students["ann"].board("POST", token="not-a-hub-token", json={"lab": "x", "step": "y", "passed": True})
    assert reply.status_code == 403 and "does not accept this token" in reply.json()["error"]
    bad_body = students["ann"].board("POST", json={"lab": "x", "passed": "yes"})
    assert bad_body.status_code == 400 and "'step'" in bad_body.json()["error"]


def test_a_student_cannot_read_or_change_another_namespace(students):
    code = f"""
import subprocess
from msalab import k8s
from kubernetes.client.exceptions import ApiException
cluster = k8s.Cluster()
for verb, what, ns in (("get", "pods", "{PREFIX}bob"), ("create", "deployments", "{PREFIX}bob"),
                       ("delete", "pods", "{PREFIX}bob"), ("get", "pods", "{PREFIX}ann"), ("create", "networkpolicies", "{PREFIX}ann"),
                       ("get", "persistentvolumeclaims", "{deploy.spec()['namespace']}")):
    answer = subprocess.run([*cluster._kubectl, "auth", "can-i", verb, what, "-n", ns], capture_output=True, text=True).stdout.strip()
    print("can-i", verb, what, ns, answer)
try:
    cluster.core.list_namespaced_pod("{PREFIX}bob")
    print("real request: allowed")
except ApiException as err:
    print("real request:", err.status)
try:
    cluster.core.delete_namespaced_pod("shop-pod", "{PREFIX}bob")
    print("real delete: allowed")
except ApiException as err:
    print("real delete:", err.status)
# In her own namespace: what would give her the node, the hub's login page or the node's traffic.
privileged = {{"metadata": {{"name": "root"}}, "spec": {{"containers": [{{"name": "c", "image": "registry.k8s.io/pause:3.10.2",
              "securityContext": {{"privileged": True}}}}]}}}}
ingress = {{"metadata": {{"name": "steal"}}, "spec": {{"rules": [{{"host": "localhost", "http": {{"paths": [{{"path": "/hub/login",
           "pathType": "Prefix", "backend": {{"service": {{"name": "x", "port": {{"number": 80}}}}}}}}]}}}}]}}}}
external = {{"metadata": {{"name": "capture"}}, "spec": {{"ports": [{{"port": 80}}], "externalIPs": ["10.96.0.10"]}}}}
# A claim of the seats' class would bind a free seat's home volume (a later student's).
seat = {{"metadata": {{"name": "seat"}}, "spec": {{"storageClassName": "{deploy.HOME_CLASS}", "accessModes": ["ReadWriteOnce"],
        "resources": {{"requests": {{"storage": "1Gi"}}}}}}}}
for what, create in (("privileged pod", lambda: cluster.core.create_namespaced_pod("{PREFIX}ann", privileged)),
                     ("hub-host ingress", lambda: cluster.networking.create_namespaced_ingress("{PREFIX}ann", ingress)),
                     ("externalIPs service", lambda: cluster.core.create_namespaced_service("{PREFIX}ann", external)),
                     ("seat claim", lambda: cluster.core.create_namespaced_persistent_volume_claim("{PREFIX}ann", seat))):
    try:
        create()
        print(what, "allowed")
    except ApiException as err:
        print(what, "refused", err.status)
"""
    printed, error = students["ann"].run(code)
    assert error is None, error
    assert f"can-i get pods {PREFIX}bob no" in printed, printed
    assert f"can-i create deployments {PREFIX}bob no" in printed
    assert f"can-i delete pods {PREFIX}bob no" in printed
    assert f"can-i get pods {PREFIX}ann yes" in printed  # the same token acts in ann's own namespace
    assert f"can-i create networkpolicies {PREFIX}ann no" in printed  # and cannot lift her isolation
    assert f"can-i get persistentvolumeclaims {deploy.spec()['namespace']} no" in printed  # nor read the homes' claims
    assert "real request: 403" in printed and "real delete: 403" in printed
    for what in ("privileged pod", "hub-host ingress", "externalIPs service", "seat claim"):
        assert f"{what} refused" in printed, printed


def _reach(student, ip: str, port: int) -> str:
    code = f"""
import urllib.request
try:
    urllib.request.urlopen("http://{ip}:{port}/", timeout=4)
    print("reached")
except urllib.error.HTTPError as err:
    print("reached", err.code)
except Exception as err:
    print("blocked", type(err).__name__)
"""
    printed, error = student.run(code)
    assert error is None, error
    return printed.strip()


def test_a_pod_cannot_reach_another_students_pod(cluster, students):
    bob_pod = cluster.core.read_namespaced_pod("shop-pod", f"{PREFIX}bob")
    ann_pod = cluster.core.read_namespaced_pod("shop-pod", f"{PREFIX}ann")
    # The same request to ann's own pod works: the catalog answers, so a block is the policy.
    assert _reach(students["ann"], ann_pod.status.pod_ip, 8080).startswith("reached")
    assert _reach(students["ann"], bob_pod.status.pod_ip, 8080).startswith("blocked")
    # Nor can ann's server reach bob's server (both run in the hub's namespace).
    bob_server = cluster.core.list_namespaced_pod(deploy.spec()["namespace"], label_selector="msalab.dev/student=bob").items[0]
    assert _reach(students["ann"], bob_server.status.pod_ip, 8888).startswith("blocked")
    # And bob's pod does answer a pod of a namespace that is neither a student's nor the hub's.
    control = "test-workshop-control"
    cluster.fresh_namespace(control)
    try:
        cluster.kubectl("run", "probe", "-n", control, "--image=msalab/shop:0.3.0", "--restart=Never", "--command", "--",
                        "sleep", "300")
        cluster.kubectl("wait", "--for=condition=Ready", "pod/probe", "-n", control, "--timeout=90s")
        reached = cluster.kubectl("exec", "-n", control, "probe", "--", "python", "-c",
                                  f"import urllib.request; print(urllib.request.urlopen('http://{bob_pod.status.pod_ip}:8080/health/ready', timeout=4).status)")
        assert reached.strip() == "200"
    finally:
        cluster.delete_namespace(control)


def test_a_students_call_to_a_service_with_no_ready_pod_stays_inside_the_node(cluster, students, connect_from,
                                                                              service_without_pods):
    """A student's server is selected by network policies, and kube-router's ACCEPT for the
    traffic they allow comes before kube-proxy's refusal of a Service with no ready pod. Before
    the node's routing rules (msalab/cluster/servicerange.py) such a call left by the default
    route: here, it was answered from outside the machine (and a restarting hub's calls to its
    own Service were, for minutes)."""
    address = service_without_pods(PREFIX + "ann")
    hub_namespace = deploy.spec()["namespace"]
    server = cluster.core.list_namespaced_pod(hub_namespace, label_selector="msalab.dev/student=ann").items[0]
    seen = connect_from(hub_namespace, f"pod/{server.metadata.name}", address, 80)
    assert seen.get("errno") == "EHOSTUNREACH" and seen["seconds"] < 3, seen


def test_a_student_reads_the_kubelets_metrics_of_their_own_pods_only(students):
    # Lab III.6's read, in ann's server: cAdvisor's series, through the workshop's kubelet-metrics
    # service. Every student has a shop pod running by now; ann sees her own, and no namespace
    # she may not list pods in (istio-system only where the mesh is installed, whose pods she may list).
    code = """
import json
from msalab import k8s, promtext
text = k8s.Cluster().kubelet_metrics("metrics/cadvisor")
series = promtext.samples(text, "container_memory_working_set_bytes")
print(json.dumps({"namespaces": sorted({labels.get("namespace") for labels, _ in series}),
                  "pods": sorted({labels["pod"] for labels, _ in series if labels.get("namespace") == "%s"})}))
""" % f"{PREFIX}ann"
    printed, error = students["ann"].run(code)
    assert error is None, f"{error}\n{printed}"
    seen = json.loads(printed.strip().splitlines()[-1])
    assert f"{PREFIX}ann" in seen["namespaces"] and "shop-pod" in seen["pods"], seen
    assert set(seen["namespaces"]) <= {f"{PREFIX}ann", f"{PREFIX}ann{deploy.MESH_SUFFIX}", "istio-system"}, seen
    # Refused, each with the reason: the student's token for the API server (the service takes
    # only tokens minted for it, so one taken on the way is no use at the API server), a token
    # nobody issued, none at all.
    code = """
import os, urllib.request, urllib.error
from msalab import k8s
url = os.environ["MSALAB_KUBELET_METRICS_URL"] + "/nodes/" + k8s.Cluster().node_name() + "/metrics/cadvisor"
api_token = open("/var/run/secrets/msalab-workshop/token").read().strip()
for headers in ({"Authorization": "Bearer " + api_token}, {"Authorization": "Bearer not-a-token"}, {}):
    try:
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
        print("answered")
    except urllib.error.HTTPError as err:
        print(err.code, err.read().decode().strip())
"""
    printed, error = students["ann"].run(code)
    assert error is None, error
    api, wrong, missing = printed.strip().splitlines()[-3:]
    assert api.startswith("401") and "does not accept this token" in api, printed
    assert wrong.startswith("401") and "does not accept this token" in wrong, printed
    assert missing.startswith("401") and "no token" in missing, printed


def test_the_quota_stops_a_student_taking_the_cluster(cluster, students):
    code = """
import json
from msalab import k8s
cluster = k8s.Cluster()
ns = cluster.fresh_namespace("greedy")
greedy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "greedy"},
          "spec": {"replicas": 40, "selector": {"matchLabels": {"app": "greedy"}},
                   "template": {"metadata": {"labels": {"app": "greedy"}}, "spec": {"containers": [
                       {"name": "pause", "image": "registry.k8s.io/pause:3.10.2",
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}}]}}}}
cluster.kubectl("apply", "-n", ns, "-f", "-", input_text=json.dumps(greedy))
cluster.wait_until(lambda: "exceeded quota" in cluster.kubectl("get", "replicasets", "-n", ns, "-o", "json"), "the quota to refuse a pod", 60)
print(json.dumps(json.loads(cluster.kubectl("get", "replicasets", "-n", ns, "-o", "json"))))
"""
    printed, error = students["cho"].run(code)
    assert error is None, error
    sets = json.loads(printed.strip().splitlines()[-1])
    newest = max(sets["items"], key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
    failures = [c for c in newest["status"].get("conditions", []) if c["type"] == "ReplicaFailure"]
    assert failures and "exceeded quota" in failures[0]["message"], newest["status"]
    running = cluster.core.list_namespaced_pod(f"{PREFIX}cho", label_selector="app=greedy").items
    assert 0 < len(running) < 40
    students["cho"].run("from msalab import k8s; k8s.Cluster().delete_namespace('greedy')")


def test_a_student_cannot_take_a_free_seats_home(cluster, students):
    """A seat's volume binds any claim of its class. A student's account may not make claims
    (RBAC: the direct claim is refused above), and their quota allows none, which stops the
    controllers that would make one for them: here a StatefulSet's claim template."""
    code = f"""
import json
from msalab import k8s
cluster = k8s.Cluster()
ns = cluster.fresh_namespace("seat")
grab = {{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {{"name": "grab"}},
        "spec": {{"serviceName": "grab", "replicas": 1, "selector": {{"matchLabels": {{"app": "grab"}}}},
                 "template": {{"metadata": {{"labels": {{"app": "grab"}}}}, "spec": {{"containers": [
                     {{"name": "pause", "image": "registry.k8s.io/pause:3.10.2",
                      "volumeMounts": [{{"name": "home", "mountPath": "/home"}}]}}]}}}},
                 "volumeClaimTemplates": [{{"metadata": {{"name": "home"}}, "spec": {{
                     "storageClassName": "{deploy.HOME_CLASS}", "accessModes": ["ReadWriteOnce"],
                     "resources": {{"requests": {{"storage": "1Gi"}}}}}}}}]}}}}
cluster.kubectl("apply", "-n", ns, "-f", "-", input_text=json.dumps(grab))
cluster.wait_until(lambda: "exceeded quota" in cluster.kubectl("get", "events", "-n", ns, "-o", "json"),
                   "the quota to refuse the claim", 60)
print(ns)
"""
    printed, error = students["ann"].run(code)
    assert error is None, error
    namespace = printed.strip().splitlines()[-1]
    assert namespace == f"{PREFIX}ann"
    assert cluster.core.list_namespaced_persistent_volume_claim(namespace).items == []
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=grab").items
    assert any("exceeded quota" in (e.message or "") and "persistentvolumeclaims" in e.message for e in events), \
        [e.message for e in events]
    students["ann"].run("from msalab import k8s; k8s.Cluster().delete_namespace('seat')")


def test_the_hub_mints_tokens_of_students_accounts_only(cluster, students):
    # The hub's account may mint tokens (its students'), and kubelet-metrics' right reads every
    # pod's metrics: the hub's admission policy keeps the one from reaching the other.
    hub = f"--as=system:serviceaccount:{deploy.spec()['namespace']}:hub"
    own = cluster.kubectl("create", "token", "student", "-n", f"{PREFIX}ann", "--duration=10m", hub)
    assert own.count(".") == 2  # a JWT
    with pytest.raises(LabError, match="mints tokens of the students' accounts only"):
        cluster.kubectl("create", "token", "kubelet-metrics", "-n", deploy.spec()["namespace"], "--duration=10m", hub)


def test_lab_three_six_runs_inside_a_students_server(cluster, students):
    """Lab III.6 (monitoring, layer by layer), every cell as Run All: its cAdvisor reads come
    from the workshop's kubelet-metrics service, which shows the student their own pods only."""
    lab = "part3/06-monitoring.ipynb"
    cells, error, printed = students["cho"].run_lab(lab)
    assert error is None, f"cell {cells}: {error}\n{printed[-2000:]}"
    rows = [r for r in students["cho"].board("GET").json()["reports"] if r["lab"] == lab.removesuffix(".ipynb")]
    assert all(r["passed"] for r in rows) and any("cAdvisor" in r["step"] for r in rows), rows
    assert cluster.kubectl("get", "deployments,pods", "-n", f"{PREFIX}cho", "-o", "name").strip() == ""  # cleaned up


def test_part_two_runs_inside_a_students_server(students):
    """A pod has no container engine: Part II's components run as processes in the server, as
    the shop does (msalab.componentprocs). Lab II.1, every cell, as Run All."""
    cells, error, printed = students["bob"].run_lab("part2/01-config-store.ipynb")
    assert error is None, f"cell {cells}: {error}\n{printed[-1500:]}"
    check = students["bob"].run("from msalab import components; print([c.name for c in components.running()])",
                                "part2/01-config-store.ipynb")
    assert check == ("[]\n", None), check  # the lab's cleanup stopped etcd


def test_a_fourth_student_is_refused_when_the_room_is_full(workshop, students):
    extra = client.Student(workshop["url"], "dan", PASSWORD)
    with pytest.raises(LabError, match="workshop is full"):
        extra.log_in()
    wrong = client.Student(workshop["url"], "ann", "not-the-password")
    with pytest.raises(LabError, match="Invalid username or password"):
        wrong.log_in()


def test_reports_survive_a_hub_restart(cluster, workshop, students):
    before = students["bob"].board("GET").json()["reports"]
    namespace = deploy.spec()["namespace"]
    cluster.kubectl("delete", "pod", "-n", namespace, "-l", "app.kubernetes.io/name=workshop-hub", "--wait=true")
    cluster.wait_rollout(namespace, "hub", timeout_s=180)
    # Ready means listening, and its proxy reaches it inside their pod (not through its Service,
    # whose address led nowhere until it listed the new pod): through the Ingress at once.
    cluster.wait_until(lambda: _status(f"{workshop['url']}/hub/health") == 200, "the restarted hub", 30)
    assert "Route added / -> http://127.0.0.1:8081" in cluster.kubectl("logs", "-n", namespace, "deploy/hub")
    cluster.wait_until(lambda: _status(f"{workshop['url']}/services/board/api/reports",
                                       students["bob"].token()) == 200, "the board after the restart", 90)
    after = students["bob"].board("GET").json()["reports"]
    assert after == before and before
    # The students' servers went on running: bob's kernel still answers, through the new hub.
    printed, error = students["bob"].run("print('still here')")
    assert error is None and "still here" in printed


NOTE = "~/labs/part3/my-notes.txt"


def _stop_server(cluster, name: str) -> None:
    deploy.stop_server(cluster, name)
    cluster.wait_until(lambda: not cluster.core.list_namespaced_pod(
        deploy.spec()["namespace"], label_selector=f"msalab.dev/student={name}").items, f"{name}'s server pod to go", 120)


def test_a_students_edits_survive_a_stopped_server(cluster, workshop, students):
    """The idle culler, the instructor (Stop Server) or a full node stops a server: the student's
    home is a volume of its own, so their labs and notes are there when it starts again."""
    ann = students["ann"]
    printed, error = ann.run(f"import os; open(os.path.expanduser({NOTE!r}), 'w').write('ann was here')")
    assert error is None, (error, printed)
    _stop_server(cluster, "ann")
    assert ann.start_server() > 0
    printed, error = ann.run(f"import os; print(open(os.path.expanduser({NOTE!r})).read())")
    assert error is None and "ann was here" in printed, (error, printed)
    home = cluster.core.read_namespaced_persistent_volume_claim(deploy.home_claim("ann"), deploy.spec()["namespace"])
    # On the course cluster (no default StorageClass) it is one of the seats' folders `up` made.
    assert (home.status.phase, home.spec.storage_class_name) == ("Bound", deploy.HOME_CLASS)
    volume = cluster.core.read_persistent_volume(home.spec.volume_name)
    assert volume.spec.host_path.path.startswith(f"{deploy.HOME_VOLUMES}/seat-"), volume.spec.host_path


def _status(url: str, token: str | None = None) -> int | None:
    try:
        return requests.get(url, timeout=5, headers={"Authorization": f"token {token}"} if token else {}).status_code
    except requests.RequestException:
        return None


def test_workshop_status_lists_the_students(workshop, students):
    info = deploy.status()
    assert info["running"] and info["seats"] == len(STUDENTS)
    assert set(info["students"]) == set(STUDENTS)
    assert all(s["server"] == "ready" for s in info["students"].values()), info["students"]


def test_reset_puts_one_student_back_to_new(cluster, workshop, students):
    printed, error = students["cho"].run(f"import os; open(os.path.expanduser({NOTE!r}), 'w').write('old')")
    assert error is None, (error, printed)
    seat = cluster.core.read_namespaced_persistent_volume_claim(deploy.home_claim("cho"), deploy.spec()["namespace"]).spec.volume_name
    removed = deploy.reset("cho")
    assert f"namespace {PREFIX}cho" in removed and "home of cho" in removed
    assert not cluster.kubectl("get", "namespace", f"{PREFIX}cho", "--ignore-not-found", "-o", "name").strip()
    assert not cluster.kubectl("get", "pvc", deploy.home_claim("cho"), "-n", deploy.spec()["namespace"],
                               "--ignore-not-found", "-o", "name").strip()
    assert set(deploy.status()["students"]) == {"ann", "bob"}
    again = client.Student(workshop["url"], "cho", PASSWORD)  # the seat is free again, with a new home
    again.log_in()
    assert again.start_server() > 0
    printed, error = again.run(f"import os; print(os.path.exists(os.path.expanduser({NOTE!r})), "
                               "sorted(os.listdir(os.path.expanduser('~/labs'))))")
    assert error is None and printed.startswith("False ") and "'part3'" in printed, (error, printed)
    # The only free seat was cho's own: emptied (the note is gone), freed, and bound again.
    home = cluster.core.read_namespaced_persistent_volume_claim(deploy.home_claim("cho"), deploy.spec()["namespace"])
    assert home.spec.volume_name == seat
    started = time.monotonic()
    printed, error = again.run(lab_code(1))
    assert error is None and f"working in namespace {PREFIX}cho" in printed, (error, printed, time.monotonic() - started)


def test_a_student_deleted_on_the_admin_page_is_cleaned_up_by_reset(cluster, workshop, students):
    """Delete User on the hub's admin page deletes the home's claim, and its seat's volume stays
    Released (with the student's files) until `workshop reset NAME` empties and frees it."""
    deploy.stop_server(cluster, "bob")
    deploy.hub_api(cluster, "DELETE", "/users/bob")
    cluster.wait_until(lambda: "bob" in deploy.status()["homes"].get("held by deleted students", []),
                       "bob's seat to show as held", 60)
    assert "workshop reset NAME" in deploy.status()["homes"]["fix"]
    assert "home of bob" in deploy.reset("bob")
    homes = deploy.status()["homes"]
    assert (homes["free"], "held by deleted students" in homes) == (1, False), homes
    assert not cluster.kubectl("get", "namespace", f"{PREFIX}bob", "--ignore-not-found", "-o", "name").strip()
