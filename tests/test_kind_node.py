"""kind where nothing can be pulled: the course's node image, its kind config, and the helpers
that read a kind cluster (the cluster itself runs in `make test-kind`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from msalab import k8s, paths
from msalab.cluster import kind, kindnode, nerdctl

NODE_FILES = paths.REPO / "cluster" / "kind" / "node"


@pytest.mark.parametrize("cgroup, is_pod", [
    ("pod0d4c41a6-0c41-4e7a-9f51-62a63a4f3d54", True),                                    # cgroupfs (offline)
    ("kubelet-kubepods-burstable-pod0d4c41a6_0c41_4e7a_9f51_62a63a4f3d54.slice", True),   # systemd (kind)
    ("kubelet-kubepods-pod0d4c41a6_0c41_4e7a_9f51_62a63a4f3d54.slice", True),             # Guaranteed, systemd
    ("cri-containerd-83c04d4f5dd11caa14c105c1faca9ad7c06962d4de4fb53a759bde8fa3d991b2.scope", False),
    ("83c04d4f5dd11caa14c105c1faca9ad7c06962d4de4fb53a759bde8fa3d991b2", False),           # a sandbox
    ("kubelet-kubepods-burstable.slice", False),
])
def test_a_pods_own_cgroup_is_recognised_under_both_cgroup_drivers(cgroup, is_pod):
    """cAdvisor's per-pod series (kubectl top's figures in Lab III.6) are found on both providers."""
    assert bool(k8s.POD_CGROUP.match(cgroup)) is is_pod


def test_the_course_node_config_skips_kubeadms_coredns_and_keeps_the_course_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "cluster_dir", lambda: tmp_path)
    config = yaml.safe_load(open(kind._config(course_node=True)))
    patches = [yaml.safe_load(p) for p in config["kubeadmConfigPatches"]]
    init = next(p for p in patches if p["kind"] == "InitConfiguration")
    assert init["skipPhases"] == ["preflight", "addon/coredns"]  # preflight: kind's own default, kept
    assert any(p["kind"] == "KubeletConfiguration" and p["failCgroupV1"] is False for p in patches)
    assert config["networking"]["podSubnet"] == kindnode.spec()["pod_subnet"]
    ports = {m["hostPort"] for m in config["nodes"][0]["extraPortMappings"]}
    cluster = paths.versions()["cluster"]
    assert ports == {cluster["ingress_host_port"], cluster["gateway_host_port"]}
    assert config["networking"]["serviceSubnet"] == paths.versions()["cluster"]["network"]["service_cidr"]
    published = yaml.safe_load(open(kind._config(course_node=False)))  # the file, with the Service range only
    assert published == {**yaml.safe_load(kind.CONFIG.read_text()), "networking": {"serviceSubnet": "10.96.0.0/16"}}


def test_the_node_image_tag_changes_with_any_of_its_files(tmp_path, monkeypatch):
    before = kindnode.image_ref()
    copy = shutil.copytree(NODE_FILES, tmp_path / "node")
    monkeypatch.setattr(kindnode, "FILES", copy)
    assert kindnode.image_ref() == before
    (copy / "etc" / "sysctl.d" / "10-msalab.conf").write_text("net.ipv4.conf.all.route_localnet=0\n")
    assert kindnode.image_ref() != before


def test_the_node_files_are_valid():
    result = subprocess.run(["bash", "-n", str(NODE_FILES / "usr/local/bin/entrypoint")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load((NODE_FILES / "kind/manifests/default-cni.yaml").read_text())
    assert manifest["kind"] == "ConfigMap" and "{{ .PodSubnet }}" in manifest["data"]["podSubnet"]
    conflist = kindnode._fill((NODE_FILES / "etc/cni/net.d/10-msalab.conflist").read_text())
    import json

    plugins = [p["type"] for p in json.loads(conflist)["plugins"]]
    assert plugins == ["bridge", "portmap"] and kindnode.spec()["pod_subnet"] in conflist


def test_capability_check_names_what_the_bounding_set_lacks():
    """doctor's reason for kind's nerdctl provider: a capability missing from the bounding set."""
    every = (1 << 41) - 1
    without_sys_resource = every & ~(1 << 24)
    assert "CAP_SYS_RESOURCE" in nerdctl.missing_capabilities(f"Name:\tx\nCapBnd:\t{without_sys_resource:016x}\n")
    assert nerdctl.missing_capabilities(f"CapBnd:\t{every:016x}\n") == []
