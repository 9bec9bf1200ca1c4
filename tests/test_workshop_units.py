"""The workshop's parts that need no cluster: the board's reckoning (who is stuck, progress
per lab), what a report must hold, sizing, the lab reported, bad input."""

from __future__ import annotations

import ast
import os

import pytest
import yaml

from msalab import paths
from msalab.errors import LabError
from msalab.workshop import deploy, images, progress, report

T0 = 1_000_000.0


def row(student, step, passed, at, lab="part3/01-pods"):
    return {"student": student, "lab": lab, "step": step, "passed": passed, "at": T0 + at}


def test_a_check_failing_for_more_than_five_minutes_is_stuck():
    rows = [row("ann", "pod ready", False, 0), row("ann", "pod ready", False, 200),  # failing since t=0
            row("bob", "pod ready", False, 0), row("bob", "pod ready", True, 100),   # fixed
            row("cho", "pod ready", False, 250)]                                      # failing, but only 110 s
    found = progress.summary(rows, now=T0 + 360, stuck_after_s=300)
    assert [(s["student"], s["step"], s["failing_s"]) for s in found["stuck"]] == [("ann", "pod ready", 360)]


def test_a_pass_restarts_the_clock_of_a_later_failure():
    rows = [row("ann", "x", False, 0), row("ann", "x", True, 10), row("ann", "x", False, 300)]
    assert progress.summary(rows, now=T0 + 400, stuck_after_s=300)["stuck"] == []
    assert progress.summary(rows, now=T0 + 601, stuck_after_s=300)["stuck"][0]["failing_s"] == 301


def test_who_is_where_and_progress_per_lab():
    rows = [row("ann", "a", True, 0), row("ann", "b", True, 1), row("bob", "a", True, 2),
            row("bob", "c", True, 3, lab="part3/02-controllers")]
    found = progress.summary(rows, now=T0 + 10)
    assert found["students"]["ann"]["lab"] == "part3/01-pods"
    assert found["students"]["bob"]["lab"] == "part3/02-controllers"
    assert found["labs"]["part3/01-pods"] == {"steps": 2, "students": {"ann": 2, "bob": 1}}


def test_reports_are_stored_and_read_back_per_student(tmp_path):
    store = progress.Store(f"sqlite:///{tmp_path / 'board.sqlite'}")
    store.add("ann", "part3/01-pods", "a", True, "", T0)
    store.add("bob", "part3/01-pods", "a", False, "fix it", T0 + 1)
    again = progress.Store(f"sqlite:///{tmp_path / 'board.sqlite'}")  # as after a restart
    assert [r["student"] for r in again.rows()] == ["ann", "bob"]
    assert [r["detail"] for r in again.rows("bob")] == ["fix it"]


@pytest.mark.parametrize("body, says", [
    (b"not json", "not JSON"), (b"[1]", "JSON object"), (b'{"lab": "x", "passed": true}', "'step'"),
    (b'{"lab": "x", "step": "y", "passed": "yes"}', "'passed'"), (b'{"lab": "' + b"x" * 201 + b'", "step": "y", "passed": true}', "longer"),
])
def test_a_bad_report_says_what_is_wrong(body, says):
    with pytest.raises(ValueError, match=says):
        progress.validate(body)


def test_the_lab_reported_is_the_notebook_being_run(monkeypatch):
    monkeypatch.delenv("MSALAB_LAB", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/student/labs/part3/01-pods.ipynb")
    assert report.current_lab() == "part3/01-pods"
    monkeypatch.setenv("MSALAB_LAB", "part4/02-traffic-management")
    assert report.current_lab() == "part4/02-traffic-management"


def test_outside_a_workshop_nothing_is_reported(monkeypatch):
    monkeypatch.delenv("MSALAB_BOARD_URL", raising=False)
    assert report.send("a step", True) is None


def test_a_board_that_refuses_is_said_once_and_the_lab_goes_on(monkeypatch, capsys):
    monkeypatch.setenv("MSALAB_BOARD_URL", "http://127.0.0.1:9/services/board/")  # nothing listens on port 9
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    assert report.send("a", True) is None and report.send("b", False) is None
    assert capsys.readouterr().out.count("progress board") == 1


@pytest.mark.parametrize("students, users, says", [
    (0, [], "must be 1 or more"), (-2, [], "must be 1 or more"), (0, ["Ann"], "not a student name"),
    (0, ["instructor"], "not a student name"), (3, ["ann", "bob"], "but 2 names"), (0, ["ab-"], "not a student name"),
    (0, ["a--b"], "not a student name"),
])
def test_bad_workshop_input_gets_the_fix(students, users, says):
    with pytest.raises(LabError, match=says) as err:
        deploy.validate(students, users)
    assert "python -m msalab workshop up" in err.value.fix or "give one" in err.value.fix


def test_quantities_and_quota_sizing():
    assert deploy._cpu_m("250m") == 250 and deploy._cpu_m("2") == 2000
    assert deploy._memory_mi("512Mi") == 512 and deploy._memory_mi("1Gi") == 1024 and deploy._memory_mi("1048576Ki") == 1024
    room = {"free": {"cpu_m": 1500, "memory_mi": 20000}, "per_student": deploy.per_student()}
    values = deploy.quota_values(room, 3)  # 500m each, less the server's 50m, capped at twice one lab's 250m
    assert deploy._cpu_m(values["quota_cpu_request"]) == 450
    assert deploy._memory_mi(values["quota_memory_request"]) == 2 * 512  # plenty of memory: capped
    tight = deploy.quota_values({"free": {"cpu_m": 400, "memory_mi": 1000}, "per_student": deploy.per_student()}, 2)
    assert deploy._cpu_m(tight["quota_cpu_request"]) == 250  # never less than one lab's requests (versions.yaml lab_pods)
    # Inside the mesh: a Part IV lab's requests (versions.yaml mesh_lab_pods), sidecars included.
    assert deploy._cpu_m(values["mesh_quota_cpu_request"]) == 500  # the share, 450m, is less: the lab's requests
    assert deploy._cpu_m(tight["mesh_quota_cpu_request"]) == 500 and tight["mesh_quota_memory_request"] == "768Mi"
    roomy = deploy.quota_values({"free": {"cpu_m": 3000, "memory_mi": 20000}, "per_student": deploy.per_student()}, 3)
    assert deploy._cpu_m(roomy["mesh_quota_cpu_request"]) == 950  # 1000m each, less the server's 50m
    # With the mesh, a student reserves the larger of the two labs' requests.
    assert deploy.per_student(meshed=True)["cpu_m"] == deploy.per_student()["cpu_m"] + 250


def test_the_lab_image_has_the_course_pins_without_the_book_and_tests():
    lines = images.lab_requirements().splitlines()
    names = {line.split("==")[0] for line in lines}
    assert "jupyterlab" in names and "kubernetes" in names and f"jupyterhub=={deploy.spec()['jupyterhub']}" in lines
    assert not names & images.NOT_IN_LAB_IMAGE
    assert "soupsieve" not in images.constraints()


def test_the_hub_config_is_valid_python():
    ast.parse((paths.REPO / "cluster" / "workshop" / "jupyterhub_config.py").read_text())
    assert os.access(paths.REPO / "cluster" / "workshop" / "start-lab", os.X_OK)
    # reset deletes the home's claim by the name the hub gives it.
    config = (paths.REPO / "cluster" / "workshop" / "jupyterhub_config.py").read_text()
    assert f'pvc_name_template = "{deploy.home_claim("{username}")}"' in config
    # The proxy and the hub's services reach the hub in its pod; students' servers by its Service.
    assert 'c.JupyterHub.hub_connect_url = "http://127.0.0.1:8081"' in config
    assert 'c.Spawner.hub_connect_url = f"http://hub.{HUB_NAMESPACE}.svc.cluster.local:8081"' in config


def test_a_students_objects_render_as_the_hub_fills_them():
    """The hub fills cluster/workshop/student.yaml with string.Template, as here."""
    import string

    import yaml

    values = {"quota_cpu_request": "500m", "quota_memory_request": "1Gi", "quota_memory_limit": "2Gi", "quota_pods": "20",
              "mesh_quota_cpu_request": "500m", "mesh_quota_memory_request": "768Mi",
              "server_memory_limit": "1Gi", "pod_cidr": "10.244.0.0/16", "hub_namespace": "msalab-workshop",
              "node_address_rules": "        - ipBlock: {cidr: 10.244.0.1/32}"}
    text = string.Template((paths.REPO / "cluster" / "workshop" / "student.yaml").read_text())
    docs = list(yaml.safe_load_all(text.substitute(values, student="ann", namespace="ws-ann")))
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "RoleBinding", "ClusterRoleBinding",
                                         "ResourceQuota", "LimitRange", "NetworkPolicy"]
    assert docs[0]["metadata"]["labels"]["msalab.dev/student"] == "ann"
    assert docs[2]["subjects"][0]["namespace"] == "ws-ann" and docs[2]["roleRef"]["kind"] == "ClusterRole"
    # A seat's home volume binds any claim of its class: a student may make no claims at all.
    assert docs[4]["spec"]["hard"]["persistentvolumeclaims"] == "0"
    sources = docs[6]["spec"]["ingress"][0]["from"]
    assert sources[1]["namespaceSelector"] == {"matchLabels": {"msalab.dev/student": "ann"}}  # ann's other namespace
    assert sources[2]["podSelector"] == {"matchLabels": {"msalab.dev/student": "ann"}}  # ann's own server only
    assert sources[4]["ipBlock"]["except"] == ["10.244.0.0/16"] and sources[5]["ipBlock"]["cidr"] == "10.244.0.1/32"

    # Inside the mesh (Part IV): injection on, the pods' policy the workshop's own, the same isolation.
    text = string.Template((paths.REPO / "cluster" / "workshop" / "student-mesh.yaml").read_text())
    docs = list(yaml.safe_load_all(text.substitute(values, student="ann", namespace="ws-ann", mesh_namespace="ws-ann--mesh")))
    assert [d["kind"] for d in docs] == ["Namespace"] + ["RoleBinding"] * 4 + ["ResourceQuota", "LimitRange",
                                                                             "NetworkPolicy"]
    assert [d["metadata"].get("namespace", "ws-ann--mesh") for d in docs] == ["ws-ann--mesh"] * 4 + ["istio-system"] + \
        ["ws-ann--mesh"] * 3
    assert docs[2]["roleRef"]["name"] == "msalab-workshop-mesh-token"  # istioctl's token, for this namespace only
    assert docs[3]["roleRef"]["name"] == "msalab-workshop-pod-reader"  # Lab IV.5's Prometheus, its namespace's pods
    assert docs[3]["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "ws-ann--mesh"}]
    assert docs[4]["roleRef"]["name"] == "msalab-workshop-mesh-reader"  # istio-system: read-only, the control plane
    del docs[2:5]
    labels = docs[0]["metadata"]["labels"]
    assert labels["istio-injection"] == "enabled" and labels["msalab.dev/mesh"] == "true" and labels["msalab.dev/student"] == "ann"
    assert docs[1]["subjects"][0] == {"kind": "ServiceAccount", "name": "student", "namespace": "ws-ann"}
    assert docs[2]["spec"]["hard"]["persistentvolumeclaims"] == "0"
    assert docs[4]["spec"]["ingress"][0]["from"][1:3] == sources[1:3]


def test_the_lab_is_the_folder_nearest_the_notebook(monkeypatch):
    monkeypatch.delenv("MSALAB_LAB", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/student/labs/part3/part3/01-pods.ipynb")
    assert report.current_lab() == "part3/01-pods"


def _hub_documents() -> dict:
    """cluster/workshop/hub.yaml as workshop up fills it, by (kind, name)."""
    import yaml

    from msalab.cluster import offline

    text = offline.fill((paths.REPO / "cluster" / "workshop" / "hub.yaml").read_text(), {
        "namespace": "msalab-workshop", "host": "localhost", "hub_image": "hub:1", "password": '"p"',
        "admin_password": '"a"', "cli_token": "t", "storage_class_line": "", "env": "", "ingress_class_line": "",
        "student_prefix": "ws-"})
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def test_the_hub_manifest_renders_and_grants_students_no_gateways_or_boundaries():
    docs = _hub_documents()
    rules = docs[("ClusterRole", "msalab-workshop-student")]["rules"]
    writable = {(group, resource) for rule in rules if "create" in rule["verbs"]
                for group in rule["apiGroups"] for resource in rule["resources"]}
    assert ("gateway.networking.k8s.io", "gateways") not in writable  # proxies outside the quota
    assert not {r for g, r in writable if r in ("resourcequotas", "limitranges", "networkpolicies", "rolebindings", "roles")}
    assert ("", "pods") in writable and ("gateway.networking.k8s.io", "httproutes") in writable
    assert ("", "serviceaccounts/token") not in writable  # only the mesh namespace's default account's:
    assert docs[("ClusterRole", "msalab-workshop-mesh-token")]["rules"] == [
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"], "resourceNames": ["default"]}]
    hub = docs[("ClusterRole", "msalab-workshop-hub")]["rules"]
    assert [r for r in hub if r["resources"] == ["clusterroles"]][0]["verbs"] == ["bind"]  # binds, never holds


# -- a cluster of one's own (msalab.cluster.external) -------------------------------------------

def test_course_images_are_named_in_the_registry_and_others_are_left_alone(monkeypatch):
    from msalab.cluster import external

    manifest = ("containers:\n  - name: a\n    image: msalab/shop:0.3.0\n  - image: \"msalab/shop:0.3.0\"\n"
                "  - name: c\n    image: docker.io/library/nginx:1.27\n")
    monkeypatch.delenv(external.REGISTRY_VARIABLE, raising=False)
    assert external.rewrite_images(manifest) == manifest and external.image_ref("msalab/shop:0.3.0") == "msalab/shop:0.3.0"
    monkeypatch.setenv(external.REGISTRY_VARIABLE, "registry.example.com:5000/course/")
    rewritten = external.rewrite_images(manifest)
    assert rewritten.count("image: registry.example.com:5000/course/msalab/shop:0.3.0") == 1
    assert "image: \"registry.example.com:5000/course/msalab/shop:0.3.0\"" in rewritten
    assert "image: docker.io/library/nginx:1.27" in rewritten
    assert external.image_ref("msalab/workshop-lab:v1") == "registry.example.com:5000/course/msalab/workshop-lab:v1"


def test_a_bad_registry_or_kubeconfig_is_refused_with_the_fix(monkeypatch, tmp_path):
    from msalab.cluster import external, manage

    monkeypatch.setenv(external.REGISTRY_VARIABLE, "https://registry.example.com")
    with pytest.raises(LabError, match="is not a registry") as err:
        external.registry()
    assert "export MSALAB_REGISTRY=" in err.value.fix
    monkeypatch.delenv(external.REGISTRY_VARIABLE)
    with pytest.raises(LabError, match="pulls them from a registry"):
        external.push_images(["msalab/shop:0.3.0"])
    monkeypatch.setenv(external.KUBECONFIG_VARIABLE, str(tmp_path / "missing"))
    assert manage.current_provider() == "external"
    with pytest.raises(LabError, match="no such file"):
        manage.kubeconfig()
    with pytest.raises(LabError, match="never starts or stops it") as err:
        manage.down()
    assert "unset MSALAB_KUBECONFIG" in err.value.fix


def test_the_pod_network_holds_every_nodes_range(monkeypatch):
    from types import SimpleNamespace

    def cluster_with(*cidrs, pod_ips=("10.244.0.5",)):
        nodes = [SimpleNamespace(spec=SimpleNamespace(pod_cidr=c)) for c in cidrs]
        pods = [SimpleNamespace(status=SimpleNamespace(pod_ip=ip), spec=SimpleNamespace(host_network=False),
                                metadata=SimpleNamespace(namespace="kube-system", name=f"pod-{n}"))
                for n, ip in enumerate(pod_ips)]
        return SimpleNamespace(core=SimpleNamespace(list_node=lambda: SimpleNamespace(items=nodes),
                                                    list_pod_for_all_namespaces=lambda: SimpleNamespace(items=pods)))

    monkeypatch.delenv(deploy.POD_CIDR_VARIABLE, raising=False)
    monkeypatch.setattr(deploy, "_provider", lambda: "external")
    assert deploy._pod_cidr(cluster_with("10.244.0.0/24")) == "10.244.0.0/16"
    assert deploy._pod_cidr(cluster_with("10.100.3.0/24", "10.101.7.0/24", pod_ips=["10.101.7.9"])) == "10.100.0.0/15"
    with pytest.raises(LabError, match="do not say") as err:
        deploy._pod_cidr(cluster_with(None))
    assert deploy.POD_CIDR_VARIABLE in err.value.fix
    # Ranges far apart widen to every address, which a NetworkPolicy cannot tell from others.
    with pytest.raises(LabError, match="every address"):
        deploy._pod_cidr(cluster_with("10.4.0.0/24", "192.168.1.0/24", pod_ips=[]))
    # The nodes' ranges are not the addresses pods get (a plugin with pools of its own): a pod
    # outside the range stops up, naming it.
    with pytest.raises(LabError, match="kube-system/pod-0 192.168.7.3") as err:
        deploy._pod_cidr(cluster_with("10.244.0.0/24", pod_ips=["192.168.7.3"]))
    assert deploy.POD_CIDR_VARIABLE in err.value.fix
    monkeypatch.setenv(deploy.POD_CIDR_VARIABLE, "192.168.0.0/16")
    assert deploy._pod_cidr(cluster_with("10.244.0.0/24", pod_ips=["192.168.7.3"])) == "192.168.0.0/16"
    for bad in ("10.0.0.0/33", "fd00::/64", "banana"):
        monkeypatch.setenv(deploy.POD_CIDR_VARIABLE, bad)
        with pytest.raises(LabError) as err:
            deploy._pod_cidr(cluster_with(None, pod_ips=[]))
        assert deploy.POD_CIDR_VARIABLE in err.value.fix


def test_the_hubs_volume_skips_a_default_class_nothing_provisions(monkeypatch):
    """kind's fallback default StorageClass names the in-tree host-path provisioner, which no
    controller runs: a claim on it would stay Pending. It is not taken for a usable default."""
    monkeypatch.setattr(deploy, "_provider", lambda: "external")
    assert deploy._storage(_cluster_with_classes(("fast", "ebs.csi.aws.com")), 3) == ("", "", "")
    with pytest.raises(LabError, match="no default StorageClass") as err:
        deploy._storage(_cluster_with_classes(("standard", deploy.INERT_PROVISIONER)), 3)
    assert "is-default-class" in err.value.fix


def _cluster_with_classes(*classes):
    import json
    from types import SimpleNamespace

    items = [{"metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
              "provisioner": provisioner} for name, provisioner in classes]
    return SimpleNamespace(kubectl=lambda *args, check=True: json.dumps({"items": items}))


def _node(free_mib: int, shell: list):
    """A node whose disk has free_mib MiB free; the commands run on it go to shell."""
    def run(command):
        shell.append(command)
        return f"/dev/vda 100000 1000 {free_mib} 1% /var/lib\n" if command.startswith("d=") else ""
    return run


def test_on_the_course_cluster_the_hub_and_each_seat_get_a_folder_of_the_node(monkeypatch):
    """No default StorageClass: the hub's volume is bound by name, and each seat's home is a
    volume of the seats' class, bound by the first student's claim; folders made for their users."""
    shell = []
    monkeypatch.setattr(deploy, "_provider", lambda: "kind")
    monkeypatch.setattr(deploy.manage, "node_shell", _node(100_000, shell))
    storage = deploy._storage(_cluster_with_classes(("standard", deploy.INERT_PROVISIONER)), 3)
    assert "volumeName: msalab-workshop-hub" in storage.hub_claim_line and storage.home_class == deploy.HOME_CLASS
    volumes = list(yaml.safe_load_all(storage.volumes))
    assert [v["metadata"]["name"] for v in volumes] == ["msalab-workshop-hub"] + [f"{deploy.HOME_CLASS}-{n}" for n in (1, 2, 3)]
    hub, seats = volumes[0], volumes[1:]
    assert hub["spec"]["claimRef"] == {"namespace": deploy.spec()["namespace"], "name": "hub-db"}
    for number, seat in enumerate(seats, 1):
        assert "claimRef" not in seat["spec"] and seat["spec"]["storageClassName"] == deploy.HOME_CLASS
        assert seat["spec"]["capacity"]["storage"] == deploy.spec()["home_size"]
        assert seat["spec"]["hostPath"]["path"] == f"{deploy.HOME_VOLUMES}/seat-{number}"
        assert seat["metadata"]["labels"] == {"app.kubernetes.io/part-of": "msalab-workshop"}  # down finds it
    made = " ".join(shell)
    assert f"chown {deploy.HUB_UID}:{deploy.HUB_UID} {deploy.HOST_VOLUME}" in made
    assert f"chown {deploy.STUDENT_UID}:{deploy.STUDENT_UID} " in made and f"{deploy.HOME_VOLUMES}/seat-3" in made


def test_a_node_without_disk_for_every_seat_is_refused_before_anything_is_made(monkeypatch):
    shell = []
    monkeypatch.setattr(deploy, "_provider", lambda: "offline")
    monkeypatch.setattr(deploy.manage, "node_shell", _node(2000, shell))
    with pytest.raises(LabError, match="2000 MiB of disk free") as err:
        deploy._storage(_cluster_with_classes(), 30)
    assert "fewer students" in err.value.fix
    assert len(shell) == 1  # only the look at the disk: no folder was made


def test_the_hubs_ingress_needs_a_class_that_serves_it():
    import json
    from types import SimpleNamespace

    def cluster_with(*classes):
        items = [{"metadata": {"name": name, "annotations": annotations}} for name, annotations in classes]
        return SimpleNamespace(kubectl=lambda *args, check=True: json.dumps({"items": items}))

    assert deploy._ingress_class(cluster_with(("contour", {}))) == "ingressClassName: contour"
    default = {"ingressclass.kubernetes.io/is-default-class": "true"}
    assert deploy._ingress_class(cluster_with(("nginx", default))) == ""
    with pytest.raises(LabError, match="no default IngressClass"):
        deploy._ingress_class(cluster_with(("nginx", {})))


def test_the_mesh_namespace_policy_is_baseline_with_istios_two_capabilities():
    """msalab-workshop-mesh-pods (hub.yaml) stands in for Pod Security's baseline in a student's
    namespace inside the mesh: bound to those namespaces only, allowing baseline's capabilities
    and Istio's NET_ADMIN and NET_RAW, nothing more. (Tested against a real API server in
    tests/cluster/test_workshop_mesh.py.)"""
    docs = _hub_documents()
    policy = docs[("ValidatingAdmissionPolicy", "msalab-workshop-mesh-pods")]["spec"]
    assert policy["matchConstraints"]["namespaceSelector"] == {"matchLabels": {"msalab.dev/mesh": "true"}}
    assert policy["failurePolicy"] == "Fail"
    capabilities = next(v["expression"] for v in policy["validations"] if "capabilities.add" in v["expression"])
    allowed = set(capabilities.split("cap in", 1)[1].replace("[", " ").replace("]", " ").replace("'", " ")
                  .replace(",", " ").replace(")", " ").split())
    assert {"NET_ADMIN", "NET_RAW"} <= allowed and not {"SYS_ADMIN", "SYS_PTRACE", "SYS_MODULE", "BPF"} & allowed
    binding = docs[("ValidatingAdmissionPolicyBinding", "msalab-workshop-mesh-pods")]["spec"]
    assert binding == {"policyName": "msalab-workshop-mesh-pods", "validationActions": ["Deny"]}


# -- Part IV in a workshop ------------------------------------------------------------------------

def test_the_hub_may_write_only_students_tracing_providers_to_the_shared_mesh_config():
    """hub-mesh.yaml's admission rule, read with Python's re (its pattern is RE2 and re alike),
    against the mesh config as the hub writes it (yaml.safe_dump, jupyterhub_config.py)."""
    import re

    import yaml

    from msalab.cluster import mesh as istio
    from msalab.cluster import offline

    docs = list(yaml.safe_load_all(offline.fill((paths.REPO / "cluster" / "workshop" / "hub-mesh.yaml").read_text(),
                                                {"namespace": "msalab-workshop", "student_prefix": "ws-"})))
    assert docs[0]["metadata"]["name"] == istio.SHARED_MESH_CONFIG
    rule = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")["spec"]["validations"][0]["expression"]
    pattern = re.search(r"matches\(r'(.*?)'\)", rule).group(1)  # a raw string: re reads its escapes as RE2 does

    def provider(namespace):
        return {"name": f"{istio.TRACING_PROVIDER}-{namespace}",
                "opentelemetry": {"service": f"jaeger.{namespace}.svc.cluster.local", "port": 4317}}
    written = yaml.safe_dump({"extensionProviders": [provider("ws-ann--mesh"), provider("ws-bob--mesh")]})
    assert re.match(pattern, written) and re.match(pattern, docs[0]["data"]["mesh"])
    assert not re.match(pattern, written + "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    assert not re.match(pattern, yaml.safe_dump({"extensionProviders": [provider("kube-system")]}))


def test_a_students_telemetry_manifests_leave_out_what_grants_rights():
    from msalab.mesh import MANIFESTS, _without_rbac

    text = (MANIFESTS / "telemetry" / "prometheus.yaml").read_text()
    kinds = [line for line in _without_rbac(text).splitlines() if line.startswith("kind: ")]
    assert kinds == ["kind: ServiceAccount", "kind: ConfigMap", "kind: Deployment", "kind: Service"]
    assert "kind: RoleBinding" in text


def test_kubelet_metrics_keeps_only_the_namespaces_a_student_may_read():
    from msalab.workshop import kubelet_metrics

    text = "\n".join([
        "# HELP container_memory_working_set_bytes Current working set",
        "# TYPE container_memory_working_set_bytes gauge",
        'container_memory_working_set_bytes{container="",id="/kubepods/pod1",namespace="ws-ann",pod="catalog-1"} 4.2e+07 1700000000000',
        'container_memory_working_set_bytes{container="",id="/kubepods/pod2",namespace="ws-bob",pod="catalog-2"} 4.1e+07 1700000000000',
        'container_memory_working_set_bytes{container="",id="/",image="",name=""} 9e+09 1700000000000',  # the node's
        'container_memory_working_set_bytes{container="",id="/system.slice",namespace="",pod=""} 1e+08',  # also the node's
        # another label's value that spells a namespace label is escaped, so it is no namespace label
        'container_memory_working_set_bytes{image="x,namespace=\\"ws-ann\\"",namespace="ws-bob",pod="p"} 1',
        'container_memory_working_set_bytes{namespace = "ws-ann--mesh",pod="q"} 2',
        "node_cpu_usage_seconds_total 12.5 1700000000000",
    ])
    asked = []

    def may_read(namespace):
        asked.append(namespace)
        return namespace in ("ws-ann", "ws-ann--mesh")

    shown = kubelet_metrics.visible(text, may_read)
    assert 'pod="catalog-1"' in shown and 'pod="q"' in shown
    assert "ws-bob" not in shown.replace('\\"ws-ann\\"', "") and 'pod="p"' not in shown
    assert 'id="/"' not in shown and "node_cpu_usage_seconds_total" not in shown
    assert shown.startswith("# HELP container_memory_working_set_bytes")
    assert 'id="/system.slice"' not in shown
    assert sorted(asked) == ["ws-ann", "ws-ann--mesh", "ws-bob"]  # each namespace asked once, "" never


@pytest.mark.parametrize("path, served", [
    ("/nodes/msalab-control-plane/metrics/cadvisor", True), ("/nodes/node-1.example/metrics/resource", True),
    ("/nodes/n/metrics/probes", False), ("/nodes/n/pods", False), ("/nodes/../api/v1/secrets/metrics/cadvisor", False),
    ("/nodes/n/metrics/cadvisor?x=1", False), ("/nodes/N/metrics/cadvisor", False)])
def test_kubelet_metrics_serves_the_two_metrics_paths_only(path, served):
    from msalab.workshop import kubelet_metrics

    assert bool(kubelet_metrics.PATH.match(path)) == served


def test_kubelet_metrics_unreachable_names_the_services_logs_in_the_workshops_namespace(monkeypatch, tmp_path):
    """A server whose kubelet-metrics service does not answer: the hint reads its logs where the
    workshop put it (versions.yaml workshop.namespace)."""
    from msalab.ports import free_port
    from msalab.workshop import mode

    port = free_port()  # nothing listens on it: connection refused at once
    (tmp_path / "kubelet-metrics-token").write_text("a-token\n")
    monkeypatch.setattr(mode, "ACCOUNT", tmp_path)
    monkeypatch.setenv("MSALAB_KUBELET_METRICS_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(LabError) as caught:
        mode.kubelet_metrics("node-1", "metrics/cadvisor")
    assert "did not answer" in caught.value.args[0]
    assert f"logs -n {paths.versions()['workshop']['namespace']} deploy/kubelet-metrics" in str(caught.value)


def test_the_seats_report_names_students_whose_deleted_home_still_holds_a_seat():
    """Delete User on the admin page leaves a seat's volume Released, with the student's files,
    until `workshop reset NAME` frees it: status names them and gives that command."""
    def seat(number, phase, claim=None):
        return {"metadata": {"name": f"{deploy.HOME_CLASS}-{number}"},
                "spec": {"storageClassName": deploy.HOME_CLASS, "hostPath": {"path": f"{deploy.HOME_VOLUMES}/seat-{number}"},
                         **({"claimRef": {"name": claim, "namespace": deploy.spec()["namespace"], "uid": "u"}} if claim else {})},
                "status": {"phase": phase}}
    seats = [seat(1, "Bound", "home-ann"), seat(2, "Released", "home-bob"), seat(3, "Available")]
    report = deploy.seat_report(seats)
    assert {k: report[k] for k in ("seats", "in use", "free")} == {"seats": 3, "in use": 1, "free": 1}
    assert report["held by deleted students"] == ["bob"] and "workshop reset NAME" in report["fix"]
    assert "fix" not in deploy.seat_report(seats[:1] + seats[2:])


def test_only_the_seats_up_made_are_ever_emptied():
    """reset empties a folder only of a seat's volume: the seats' class, under the seats' folder."""
    import json
    from types import SimpleNamespace

    def volume(name, storage_class, path, phase="Released", claim="home-bob"):
        return {"metadata": {"name": name}, "status": {"phase": phase},
                "spec": {"storageClassName": storage_class, "hostPath": {"path": path}, "claimRef": {"name": claim}}}
    items = [volume("msalab-workshop-hub", "", str(deploy.HOST_VOLUME), claim="hub-db"),
             volume("elsewhere", deploy.HOME_CLASS, "/srv/data"),
             volume("seat-1", deploy.HOME_CLASS, f"{deploy.HOME_VOLUMES}/seat-1"),
             volume("seat-2", deploy.HOME_CLASS, f"{deploy.HOME_VOLUMES}/seat-2", phase="Bound"),
             volume("seat-3", deploy.HOME_CLASS, f"{deploy.HOME_VOLUMES}/seat-3", claim="home-ann")]
    cluster = SimpleNamespace(kubectl=lambda *args, check=True: json.dumps({"items": items}))
    assert [v["metadata"]["name"] for v in deploy._seats(cluster)] == ["seat-1", "seat-2", "seat-3"]
    assert [v["metadata"]["name"] for v in deploy._seats(cluster, released_by="home-bob")] == ["seat-1"]
