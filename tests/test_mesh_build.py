"""The course's own build of Istio (the offline cluster's): the fixes it carries apply to the
pinned module, name the build, and a fix that no longer applies stops the build with the fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from msalab import LabError, paths
from msalab.cluster import gobuild, mesh


def test_every_listed_patch_is_in_the_repository():
    listed = mesh.spec()["patches"]
    assert listed, "versions.yaml mesh.istio.patches lists no fix"
    for patch in mesh._patches():
        assert patch.is_file(), f"{patch} is listed in versions.yaml but missing"
        assert "\n--- a/" in patch.read_text() and "\n+++ b/" in patch.read_text(), f"{patch.name} is not a unified diff"


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


def test_the_syncz_fix_takes_the_proxy_lock_once():
    """The fix itself: debugSyncz no longer calls the locking clone inside the locked loop."""
    patch = (paths.REPO / "cluster" / "offline" / "istio-debug-syncz-lock.patch").read_text()
    removed = [line for line in patch.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in patch.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert removed == ["-\t\t\twrs := con.proxy.DeepCloneWatchedResources()"]
    assert not any("Lock()" in line or "DeepClone" in line.split("//")[0] for line in added)


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
