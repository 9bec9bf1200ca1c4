"""Part IV in a classroom: with the mesh installed before `workshop up`, each student has a
second namespace inside the mesh (ws-NAME--mesh). A student runs Labs IV.1, IV.5, IV.6 and IV.7 end to end
in their server; their tracing provider is theirs, and a Telemetry may name no other; they may turn injection on and off
for their mesh namespace and change nothing else of a namespace; istiod tells them about their
own proxies only, through the one token they may mint; the mesh namespace admits Istio's init
container but holds every pod to Pod Security's baseline otherwise (a real API server's answers).

Runs after tests/cluster/test_mesh.py and Part IV's labs in `make test` (the mesh is built by
then); it installs the mesh if it is not there, and uninstalls it if it did."""

from __future__ import annotations

import json

import pytest

from msalab.cluster import mesh as istio
from msalab.workshop import client, deploy

pytestmark = pytest.mark.cluster

PASSWORD = "room-42-password"
STUDENT = "eve"
PREFIX = deploy.spec()["student_namespace_prefix"]
OWN, MESHED = f"{PREFIX}{STUDENT}", f"{PREFIX}{STUDENT}{deploy.MESH_SUFFIX}"
OTHER = "test-workshop-other-mesh"  # meshed, and not the student's: istiod must not tell them about it


# Run in the student's server: whether the API server admits a manifest in the student's mesh
# namespace, as the student (a server-side dry run: admission runs, nothing is stored).
ADMITTED = (
    "import json, subprocess\nfrom msalab.cluster import manage\n"
    "def admitted(manifest):\n"
    f"    r = subprocess.run([*manage.kubectl_command(), 'create', '--dry-run=server', '-n', '{MESHED}', '-f', '-'],\n"
    "                       input=manifest, capture_output=True, text=True)\n"
    "    return 'ok' if r.returncode == 0 else ' '.join(r.stderr.split())[:300]\n")


@pytest.fixture(scope="module")
def mesh_installed(cluster):
    installed_here = not istio.installed()
    if installed_here or not istio.control_plane_ready():  # not ready: e.g. an istiod without the course's fixes
        istio.install()
    yield
    if installed_here:
        assert istio.uninstall() == []


@pytest.fixture(scope="module")
def student(cluster, mesh_installed):
    if deploy.is_running(cluster):  # a run that was interrupted
        deploy.down()
    info = deploy.up(students=1, password=PASSWORD)
    try:
        eve = client.Student(info["url"], STUDENT, PASSWORD)
        eve.log_in()
        eve.start_server()
        yield eve
    finally:
        deploy.down()
        cluster.kubectl("delete", "namespace", OTHER, "--ignore-not-found", "--wait=true")
    left = cluster.kubectl("get", "namespaces,clusterroles", "-l", deploy.LABEL, "-o", "name")
    left += cluster.kubectl("get", "rolebindings,roles,configmaps", "-n", "istio-system", "-l", deploy.LABEL, "-o", "name")
    assert left.strip() == "", f"workshop down left: {left}"


def test_the_student_has_a_namespace_inside_the_mesh(cluster, student):
    labels = cluster.core.read_namespace(MESHED).metadata.labels
    assert labels["istio-injection"] == "enabled" and labels["msalab.dev/student"] == STUDENT
    printed, error = student.run("from msalab.workshop import mode; print(mode.namespace(), mode.mesh_namespace())",
                                 "part4/01-install-and-interception.ipynb")
    assert (printed.split(), error) == ([OWN, MESHED], None)


def test_lab_four_one_runs_inside_a_students_server(cluster, student):
    """Lab IV.1, every cell as Run All: injection, istio-init's rules, istioctl proxy-config and
    proxy-status, a request followed through both proxies, the cleanup."""
    cells, error, printed = student.run_lab("part4/01-install-and-interception.ipynb")
    assert error is None, f"cell {cells}: {error}\n{printed[-2000:]}"
    # Its checks reached the board, every one passed, among them the proxies' own evidence.
    rows = [r for r in student.board("GET").json()["reports"] if r["lab"] == "part4/01-install-and-interception"]
    assert len(rows) >= 10 and all(r["passed"] for r in rows), rows
    assert any("15001" in r["step"] for r in rows), [r["step"] for r in rows]
    assert cluster.kubectl("get", "deployments,pods", "-n", MESHED, "-o", "name").strip() == ""  # the lab cleaned up


def _run_whole_lab(cluster, student, lab: str) -> list[dict]:
    """Every cell of the lab in the student's server, as Run All; its board rows, each passed;
    nothing of it left in either of the student's namespaces."""
    cells, error, printed = student.run_lab(lab)
    assert error is None, f"cell {cells}: {error}\n{printed[-2000:]}"
    rows = [r for r in student.board("GET").json()["reports"] if r["lab"] == lab.removesuffix(".ipynb")]
    assert rows and all(r["passed"] for r in rows), rows
    for namespace in (OWN, MESHED):  # the lab cleaned up
        assert cluster.kubectl("get", "deployments,pods", "-n", namespace, "-o", "name").strip() == ""
    return rows


def test_lab_four_five_runs_inside_a_students_server(cluster, student):
    """Lab IV.5 (metrics, traces and logs of the meshed shop), every cell as Run All: its spans go
    to the student's own Jaeger through the provider the hub made for them, and its waits ask
    istiod for proxy-status over XDS while its Telemetry is pushed (the course's istiod carries
    the fix for the hang that once met this lab: the instructors' guide, Part IV)."""
    rows = _run_whole_lab(cluster, student, "part4/05-telemetry.ipynb")
    assert any("one trace holds spans" in r["step"] for r in rows), rows


def test_lab_four_six_runs_inside_a_students_server(cluster, student):
    """Lab IV.6, whose first fix labels the namespace for injection: every cell as Run All, the
    exercises with their solutions, each reported to the board."""
    lab = "part4/06-troubleshooting.ipynb"
    cells, error, printed = student.run_lab(lab)
    assert error is None, f"cell {cells}: {error}\n{printed[-2000:]}"
    rows = [r for r in student.board("GET").json()["reports"] if r["lab"] == lab.removesuffix(".ipynb")]
    assert len(rows) >= 5 and all(r["passed"] for r in rows), rows
    assert cluster.kubectl("get", "deployments,pods,serviceaccounts", "-n", MESHED, "-o", "name",
                           "--field-selector=metadata.name!=default").strip() == ""  # the lab cleaned up
    assert cluster.core.read_namespace(MESHED).metadata.labels["istio-injection"] == "enabled"


def test_lab_four_seven_runs_inside_a_students_server(cluster, student):
    """Lab IV.7 (what the proxies cost), every cell as Run All: the proxies' CPU and memory come
    from cAdvisor through the workshop's kubelet-metrics service (the student's own pods only)."""
    rows = _run_whole_lab(cluster, student, "part4/07-costs.ipynb")
    assert any("cAdvisor measured" in r["step"] for r in rows), rows


def test_a_students_tracing_goes_to_their_own_jaeger_only(cluster, student):
    """The hub added the student's provider to the mesh config; a Telemetry in their namespace
    may name it, and no other (a classmate's, or the course's)."""
    shared = cluster.core.read_namespaced_config_map(istio.SHARED_MESH_CONFIG, istio.SYSTEM_NAMESPACE).data["mesh"]
    assert f"name: jaeger-otlp-{MESHED}" in shared and f"service: jaeger.{MESHED}.svc.cluster.local" in shared, shared

    def telemetry(provider):
        return json.dumps({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": "probe-tracing"},
                           "spec": {"tracing": [{"providers": [{"name": provider}]}]}})
    code = ADMITTED + "".join(f"print({p!r}, '=>', admitted({telemetry(p)!r}))\n"
                              for p in (f"jaeger-otlp-{MESHED}", "jaeger-otlp", "jaeger-otlp-ws-bob--mesh"))
    printed, error = student.run(code, "part4/05-telemetry.ipynb")
    assert error is None, printed
    answers = dict(line.split(" => ", 1) for line in printed.strip().splitlines())
    assert answers.pop(f"jaeger-otlp-{MESHED}") == "ok", printed
    assert all("msalab-workshop-students" in answer for answer in answers.values()), printed


def test_a_student_may_change_only_the_injection_label_of_their_mesh_namespace(cluster, student):
    label = ("import subprocess\nfrom msalab.cluster import manage\n"
             "def label(namespace, *labels):\n"
             "    r = subprocess.run([*manage.kubectl_command(), 'label', 'namespace', namespace, '--overwrite', *labels],\n"
             "                       capture_output=True, text=True)\n"
             "    return 'ok' if r.returncode == 0 else ' '.join(r.stderr.split())[:300]\n")
    cases = {
        "injection off": (MESHED, "istio-injection-"),
        "injection on": (MESHED, "istio-injection=enabled"),
        "another student's name": (MESHED, "msalab.dev/student=bob"),
        "Pod Security": (MESHED, "pod-security.kubernetes.io/warn=baseline"),
        "injection in their own namespace": (OWN, "istio-injection=enabled"),
        "another namespace": ("istio-system", "istio-injection=enabled"),
    }
    code = label + "".join(f"print({name!r}, '=>', label(*{args!r}))\n" for name, args in cases.items())
    printed, error = student.run(code, "part4/06-troubleshooting.ipynb")
    assert error is None, printed
    answers = dict(line.split(" => ", 1) for line in printed.strip().splitlines())
    assert answers.pop("injection off") == "ok" and answers.pop("injection on") == "ok", printed
    assert "forbidden" in answers.pop("another namespace"), printed
    assert all("msalab-workshop-namespaces" in answer for answer in answers.values()), printed
    labels = cluster.core.read_namespace(MESHED).metadata.labels
    assert labels["istio-injection"] == "enabled" and labels["msalab.dev/student"] == STUDENT
    assert "istio-injection" not in cluster.core.read_namespace(OWN).metadata.labels
    # A lab stopped while the label is off (Lab IV.6 before its first fix): the mesh still reads
    # as ready, and the next meshed namespace has the label back.
    printed, error = student.run(label + f"print(label({MESHED!r}, 'istio-injection-'))\n"
                                 "from msalab import k8s\nfrom msalab.mesh import Mesh\n"
                                 "print(Mesh(k8s.Cluster()).meshed_namespace('lab-mesh'))", "part4/06-troubleshooting.ipynb")
    assert error is None and printed.split() == ["ok", MESHED], printed
    assert cluster.core.read_namespace(MESHED).metadata.labels["istio-injection"] == "enabled"


def test_istiod_tells_a_student_about_their_own_proxies_only(cluster, student):
    """istioctl proxy-status from the student's server asks istiod as the student's mesh
    namespace: a meshed pod of another namespace is in the instructor's answer, not in theirs."""
    cluster.kubectl("create", "namespace", OTHER)
    cluster.kubectl("label", "namespace", OTHER, "istio-injection=enabled")
    cluster.deploy_shop(OTHER)
    cluster.wait_until(lambda: any(n.endswith(f".{OTHER}") for n in istio.proxy_sync()), "the other shop's proxies", 120)
    cluster.kubectl("apply", "-n", MESHED, "-f", "-", input_text=_pod("mine", {}))  # a proxy of the student's
    cluster.wait_until(lambda: any(n.endswith(f".{MESHED}") for n in istio.proxy_sync()), "the student's proxy", 120)
    printed, error = student.run("import json\nfrom msalab.cluster import mesh\nprint(json.dumps(sorted(mesh.proxy_sync())))",
                                 "part4/01-install-and-interception.ipynb")
    assert error is None, printed
    seen = json.loads(printed)
    assert seen and all(name.endswith(f".{MESHED}") for name in seen), seen
    # Asked as istio-system's own account (what istioctl does by default), the student is refused.
    printed, error = student.run("import subprocess\nfrom msalab.cluster import mesh\n"
                                 "from msalab.cluster import manage\n"
                                 "r = subprocess.run([str(mesh.istioctl()), f'--kubeconfig={manage.kubeconfig()}', 'proxy-status'],\n"
                                 "                   capture_output=True, text=True)\n"
                                 "print(r.returncode, r.stderr[-300:])", "part4/01-install-and-interception.ipynb")
    assert error is None and not printed.startswith("0 "), printed
    assert "forbidden" in printed.lower(), printed


def _pod(name: str, security: dict, **spec) -> str:
    """A pod of the course's shop image, with the given container securityContext and pod spec fields."""
    container = {"name": "app", "image": "msalab/shop:0.3.0", "securityContext": security}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [container], **spec}})


def test_the_mesh_namespace_holds_pods_to_baseline_but_istios_capabilities(student):
    """As the student: server-side dry runs (admission runs, nothing is stored)."""
    code = ADMITTED
    cases = {
        "istio-init's capabilities": _pod("caps", {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}),
        "privileged": _pod("priv", {"privileged": True}),
        "SYS_ADMIN": _pod("sysadmin", {"capabilities": {"add": ["SYS_ADMIN"]}}),
        "host network": _pod("hostnet", {}, hostNetwork=True),
        "host path": _pod("hostpath", {}, volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
        "host port": json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostport"}, "spec": {
            "containers": [{"name": "app", "image": "msalab/shop:0.3.0", "ports": [{"containerPort": 8080, "hostPort": 8080}]}]}}),
        "unconfined seccomp": _pod("seccomp", {"seccompProfile": {"type": "Unconfined"}}),
    }
    code += "".join(f"print({name!r}, '=>', admitted({pod!r}))\n" for name, pod in cases.items())
    printed, error = student.run(code, "part4/01-install-and-interception.ipynb")
    assert error is None, printed
    answers = dict(line.split(" => ", 1) for line in printed.strip().splitlines())
    assert answers.pop("istio-init's capabilities") == "ok", printed
    assert all("msalab-workshop-mesh-pods" in answer for answer in answers.values()), printed


def test_a_student_cannot_route_another_namespaces_service(student):
    """Istio shares routing rules across the mesh: a VirtualService for another namespace's
    service, by its full name, would reroute that student's calls. The workshop refuses it, and
    admits the labs' own rules, which name services by their short name."""
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "hijack"},
            "spec": {"hosts": ["catalog.ws-bob--mesh.svc.cluster.local"],
                     "http": [{"route": [{"destination": {"host": "catalog"}}]}]}}
    own = {**rule, "metadata": {"name": "own"}, "spec": {**rule["spec"], "hosts": ["catalog"]}}
    code = ADMITTED + f"print(admitted({json.dumps(own)!r}))\nprint(admitted({json.dumps(rule)!r}))\n"
    printed, error = student.run(code, "part4/01-install-and-interception.ipynb")
    assert error is None, printed
    own_answer, hijack_answer = printed.strip().splitlines()
    assert own_answer == "ok", printed
    assert "msalab-workshop-students" in hijack_answer and "short name" in hijack_answer, printed


def test_a_student_mints_only_istiods_token_of_their_mesh_namespace(student):
    """istioctl needs a token of the mesh namespace's default account, for istiod, for an hour:
    a student may mint that one, and no other account's, audience or lifetime."""
    code = ("import subprocess\nfrom msalab.cluster import manage\n"
            "def mint(*args):\n"
            "    r = subprocess.run([*manage.kubectl_command(), 'create', 'token', *args], capture_output=True, text=True)\n"
            "    return 'ok' if r.returncode == 0 and r.stdout.count('.') == 2 else ' '.join(r.stderr.split())[:300]\n")
    cases = {
        "istioctl's": ["default", "-n", MESHED, "--audience", "istio-ca", "--duration", "1h"],
        "the student's own account": ["student", "-n", OWN, "--audience", "istio-ca", "--duration", "1h"],
        "another account": ["student", "-n", MESHED, "--audience", "istio-ca", "--duration", "1h"],
        "for the API server": ["default", "-n", MESHED, "--duration", "1h"],
        "for a day": ["default", "-n", MESHED, "--audience", "istio-ca", "--duration", "24h"],
    }
    code += "".join(f"print({name!r}, '=>', mint(*{args!r}))\n" for name, args in cases.items())
    printed, error = student.run(code, "part4/01-install-and-interception.ipynb")
    assert error is None, printed
    answers = dict(line.split(" => ", 1) for line in printed.strip().splitlines())
    assert answers["istioctl's"] == "ok", printed
    assert "forbidden" in answers["the student's own account"] and "forbidden" in answers["another account"], printed
    assert all("msalab-workshop-mesh-tokens" in answers[case] for case in ("for the API server", "for a day")), printed
