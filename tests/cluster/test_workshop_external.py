"""A workshop on a cluster of the instructor's own (MSALAB_KUBECONFIG, MSALAB_REGISTRY).

The course's offline cluster stands in for it, used the way msalab uses any other cluster: only
through a copy of its kubeconfig, with storage the "instructor" made (a default StorageClass
and two volumes: the hub's and the student's home), and given images only through a registry. That registry is go-containerregistry's
(pinned in versions.yaml) on 127.0.0.1, where the node's containerd pulls over plain HTTP as it
does for any localhost registry. Nothing is loaded into the node: every image the hub, the
student's server and the student's lab run is pulled from there under the registry's name.

Only on the offline provider: kind's node cannot reach this machine's 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from msalab import paths
from msalab.errors import LabError
from msalab.cluster import external, manage
from msalab.workshop import client, deploy
from msalab.workshop import images as workshop_images

pytestmark = pytest.mark.cluster

PASSWORD = "room-42-password"
STUDENT = "dan"
PREFIX = deploy.spec()["student_namespace_prefix"]
STORAGE = "instructor-storage"
VOLUME_DIR = paths.cache_dir() / "test-instructor-volume"


@pytest.fixture(scope="module")
def registry():
    """go-containerregistry's registry on a free port of 127.0.0.1; its address."""
    binary = external.stand_in_registry_binary()
    # It logs every request: to a file, as a pipe nobody reads would fill and stop it.
    log = paths.cache_dir() / "test-registry.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(binary), "-port", "0"], stderr=out, stdout=out)
    deadline = time.monotonic() + 30
    while "serving on port" not in log.read_text() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    line = next((line for line in log.read_text().splitlines() if "serving on port" in line), "")
    assert line, f"the registry did not start: {log.read_text()[-500:]}"
    yield f"127.0.0.1:{line.split()[-1]}"
    server.terminate()
    server.wait(timeout=10)
    log.unlink()


@pytest.fixture(scope="module")
def instructor_cluster(cluster, registry):
    """The offline cluster as msalab sees a cluster it did not make: its own storage, a copy of
    its kubeconfig, a registry. Undone at the end, with everything the workshop made."""
    if manage.current_provider() != "offline":
        pytest.skip("the stand-in registry is on 127.0.0.1, which only the offline provider's node reaches")
    # Two volumes of the default class, for the hub's claim and the student's home. Either claim
    # may bind either volume, so each folder is writable by any user (as local-path-provisioner
    # makes its folders; a hostPath volume does not honour fsGroup).
    volumes = [f"""apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {STORAGE}, annotations: {{storageclass.kubernetes.io/is-default-class: "true"}}}}
provisioner: kubernetes.io/no-provisioner"""]
    for number in (1, 2):
        folder = VOLUME_DIR / str(number)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o777)
        volumes.append(f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: {STORAGE}-{number}}}
spec:
  capacity: {{storage: {deploy.spec()["home_size"]}}}
  accessModes: [ReadWriteOnce]
  storageClassName: {STORAGE}
  hostPath: {{path: {folder}, type: Directory}}""")
    cluster.kubectl("apply", "-f", "-", input_text="\n---\n".join(volumes))
    kubeconfig = paths.cache_dir() / "test-instructor.kubeconfig"
    shutil.copy(manage.kubeconfig(), kubeconfig)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(external.KUBECONFIG_VARIABLE, str(kubeconfig))
        env.setenv(external.REGISTRY_VARIABLE, f"{registry}/class")
        # The offline cluster's node does not say which addresses its pods get, as with network
        # plugins that hand them out themselves: the instructor says (and up refuses without).
        with pytest.raises(LabError, match=deploy.POD_CIDR_VARIABLE):
            deploy.up(students=1, password=PASSWORD, host="localhost")
        env.setenv(deploy.POD_CIDR_VARIABLE, paths.versions()["cluster"]["kind"]["course_node"]["pod_subnet"])
        assert manage.current_provider() == "external"
        yield registry
        deploy.down()
    cluster.kubectl("delete", "persistentvolume", f"{STORAGE}-1", f"{STORAGE}-2", "--ignore-not-found")
    cluster.kubectl("delete", "storageclass", STORAGE, "--ignore-not-found")
    kubeconfig.unlink()
    shutil.rmtree(VOLUME_DIR, ignore_errors=True)


def registry_tags(registry: str, repository: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/class/{repository}/tags/list", timeout=10) as reply:
        return json.load(reply)["tags"]


def test_a_workshop_runs_on_a_cluster_of_ones_own(cluster, instructor_cluster):
    registry = instructor_cluster
    with pytest.raises(LabError, match="--host"):
        deploy.up(students=1, password=PASSWORD)  # without the hub's host name: refused, with the fix
    info = deploy.up(students=1, password=PASSWORD, host="localhost")

    # The images went to the registry, and the hub runs the one pulled from there.
    hub_ref, lab_ref = workshop_images.hub_ref(), workshop_images.lab_ref()
    assert hub_ref.split(":")[1] in registry_tags(registry, "msalab/workshop-hub")
    assert lab_ref.split(":")[1] in registry_tags(registry, "msalab/workshop-lab")
    hub_pod = cluster.core.list_namespaced_pod(deploy.spec()["namespace"], label_selector="app.kubernetes.io/name=workshop-hub").items[0]
    assert hub_pod.spec.containers[0].image == f"{registry}/class/{hub_ref}"

    # A student logs in; the server and the lab's pod are pulled from the registry too.
    student = client.Student(info["url"], STUDENT, PASSWORD)
    student.log_in()
    student.start_server()
    server = cluster.core.list_namespaced_pod(deploy.spec()["namespace"],
                                              label_selector=f"msalab.dev/student={STUDENT}").items[0]
    assert server.spec.containers[0].image == f"{registry}/class/{lab_ref}"
    # Their home is a claim on the cluster's default StorageClass.
    home = cluster.core.read_namespaced_persistent_volume_claim(deploy.home_claim(STUDENT), deploy.spec()["namespace"])
    assert (home.status.phase, home.spec.storage_class_name) == ("Bound", STORAGE)
    printed, error = student.run("\n".join(client.lab_cells("part3/01-pods.ipynb", 4)))
    assert error is None, f"{error}\n{printed}"
    assert "✓ both containers of the pod are running and ready" in printed, printed
    pod = cluster.core.read_namespaced_pod("shop-pod", f"{PREFIX}{STUDENT}")
    assert {c.image for c in pod.spec.containers} == {f"{registry}/class/msalab/shop:0.3.0"}
    assert pod.status.phase == "Running"

    # Its steps reached the board.
    deadline = time.monotonic() + 30
    while not (rows := student.board("GET").json()["reports"]) and time.monotonic() < deadline:
        time.sleep(1)
    assert rows and {row["lab"] for row in rows} == {"part3/01-pods"}, rows

    # down removes what it made; the registry's tags on this machine go too.
    removed = deploy.down()
    assert f"namespace/{PREFIX}{STUDENT}" in removed, removed
    assert cluster.kubectl("get", "namespaces,clusterroles,clusterrolebindings", "-l", deploy.LABEL, "-o", "name").strip() == ""
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}", f"{registry}/class/*/*"],
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [], listed.stdout
