"""The course's own build of Istio (the offline cluster's): the fixes it carries apply to the
pinned module, name the build, and a fix that no longer applies stops the build with the fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from msalab import LabError, paths
from msalab.cluster import gobuild, mesh


def test_every_listed_patch_is_a_unified_diff_in_the_repository():
    for patch in mesh._patches():
        assert "\n--- a/" in patch.read_text() and "\n+++ b/" in patch.read_text(), f"{patch.name} is not a unified diff"


def test_a_listed_patch_that_is_missing_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(mesh, "spec", lambda: {**paths.versions()["mesh"]["istio"], "patches": ["cluster/offline/gone.patch"]})
    with pytest.raises(LabError) as caught:
        mesh.image_tag()
    assert "gone.patch, which is not there" in caught.value.args[0] and "versions.yaml" in str(caught.value)


def test_the_image_tag_names_the_fixes(monkeypatch, tmp_path):
    """A changed fix gives a new tag, so no cached binary, image or node image is reused."""
    first, second = tmp_path / "one.patch", tmp_path / "two.patch"
    first.write_text("--- a/x\n+++ b/x\n")
    second.write_text("--- a/x\n+++ b/x\n@@ changed\n")
    monkeypatch.setattr(mesh, "_patches", lambda: [first])
    tag_one = mesh.image_tag()
    monkeypatch.setattr(mesh, "_patches", lambda: [second])
    tag_two = mesh.image_tag()
    assert f"tag={tag_two}" in mesh.install_command("offline")  # the install runs the images built with it
    assert f"buildVersion={mesh.spec()['offline_tag']} " in mesh._ldflags(mesh.spec())  # the version stays upstream's
    monkeypatch.setattr(mesh, "_patches", lambda: [])
    assert tag_one.startswith(mesh.spec()["offline_tag"] + "-msalab.") and tag_one != tag_two
    assert mesh.image_tag() == mesh.spec()["offline_tag"]


def test_the_pinned_module_takes_every_patch():
    """git apply --check against the pinned module from the Go module proxy (the build's own source)."""
    source = gobuild.download_module(mesh.spec()["module"], mesh.spec()["version"])
    for patch in mesh._patches():
        check = subprocess.run(["git", "apply", "--check", str(patch)], cwd=source, capture_output=True, text=True,
                               env={"GIT_CEILING_DIRECTORIES": str(Path(source).parent), "PATH": "/usr/bin:/bin"})
        assert check.returncode == 0, f"{patch.name} no longer applies: {check.stderr}"


def test_the_built_istiod_never_takes_a_proxys_lock_twice_in_debug_syncz(tmp_path):
    """The source the build compiles (the pinned module's statusgen.go with the listed fixes applied,
    whichever they are): debugSyncz holds each proxy's read lock, so it must not call the locking
    DeepCloneWatchedResources inside it. When Istio fixes it upstream and the patch is dropped,
    this still holds."""
    relative = Path("pilot/pkg/xds/statusgen.go")
    source = gobuild.download_module(mesh.spec()["module"], mesh.spec()["version"])
    (tmp_path / relative).parent.mkdir(parents=True)
    (tmp_path / relative).write_text((Path(source) / relative).read_text())
    for patch in mesh._patches():
        subprocess.run(["git", "apply", f"--include={relative}", str(patch)], cwd=tmp_path, check=True,
                       env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent), "PATH": "/usr/bin:/bin"})
    text = (tmp_path / relative).read_text()
    body = text[text.index("func (sg *StatusGen) debugSyncz("):]
    body = body[:body.index("\n}\n")]
    code = "\n".join(line.split("//")[0] for line in body.splitlines())
    assert "con.proxy.RLock()" in code, "debugSyncz no longer takes the lock itself: read it again"
    assert "DeepCloneWatchedResources()" not in code, "debugSyncz takes the proxy's read lock twice"


def test_a_patch_that_does_not_apply_stops_the_build_with_the_fix(monkeypatch, tmp_path):
    module = tmp_path / "module"
    (module / "pkg").mkdir(parents=True)
    (module / "pkg" / "file.go").write_text("package pkg\n\nvar x = 1\n")
    patch = tmp_path / "stale.patch"
    patch.write_text("--- a/pkg/file.go\n+++ b/pkg/file.go\n@@ -1,3 +1,3 @@\n package pkg\n \n-var x = 2\n+var x = 3\n")
    monkeypatch.setattr(gobuild, "download_module", lambda module_path, version: module)
    monkeypatch.setenv("MSALAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LabError) as caught:
        gobuild.build_patched_module("example", "example.com/m", "v1.0.0", "t1", [patch], [], ["pkg"])
    assert "stale.patch does not apply to example.com/m@v1.0.0" in caught.value.args[0]
    assert "versions.yaml" in str(caught.value)
    assert not gobuild.is_built("example", "v1.0.0-t1")


@pytest.mark.parametrize("tag, built", [("1.31.0-msalab.1af5453719", True), ("1.31.0", True), ("1.31.1", False)])
def test_a_students_server_tells_the_build_from_istiods_image_without_the_fixes(monkeypatch, tag, built):
    """A student's server has no copy of the patches: it recognises the build by hub and upstream tag."""
    spec = {**mesh.spec(), "offline_tag": "1.31.0"}
    monkeypatch.setattr(mesh, "spec", lambda: spec)
    monkeypatch.setattr(mesh, "_patches", lambda: [Path("/nonexistent/fix.patch")])
    monkeypatch.setattr(mesh, "_kubectl", lambda *args, **kwargs: f"{spec['hub']}/pilot:{tag}")
    assert mesh.built_here("workshop") is built


@pytest.mark.parametrize("current", [True, False])
def test_an_istiod_without_the_current_fixes_is_not_ready_and_says_reinstall(monkeypatch, current):
    """An install from before a fix changed: `mesh status` says so, and a lab's Mesh() reinstalls."""
    image = f"{mesh.spec()['hub']}/pilot:{mesh.image_tag() if current else mesh.spec()['offline_tag']}"
    monkeypatch.setattr(mesh, "_provider", lambda: "offline")
    monkeypatch.setattr(mesh, "_kubectl", lambda *args, **kwargs: f"1 {image}")
    ready, what, fix = mesh._istiod_ready()
    assert ready is current, what
    if not current:
        assert "not the course's current build" in what and "mesh install" in fix


def test_a_hung_proxy_status_names_the_fault_and_the_remedy_on_any_machine(monkeypatch):
    """istioctl asks over XDS from the instructor's machine too (a port-forward): the same hang,
    the same message, whether or not the call was a workshop student's."""
    from msalab.cluster import manage

    monkeypatch.setattr(mesh, "istioctl", lambda provider=None: Path("istioctl"))
    monkeypatch.setattr(manage, "kubeconfig", lambda: "admin.kubeconfig")
    monkeypatch.setattr(mesh, "_workshop_xds", lambda args: [])
    hung = subprocess.CompletedProcess([], 1, "", f"Error: timeout, {mesh.SYNCZ_HANG}\n")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: hung)
    with pytest.raises(LabError) as caught:
        mesh.run_istioctl("proxy-status")
    assert "a proxy's lock taken twice" in caught.value.args[0]
    assert "rollout restart deployment/istiod" in str(caught.value)
