"""The offline cluster refuses hosts it cannot run on, before it changes anything,
and says what to do instead."""

from __future__ import annotations

import socket

import pytest

from msalab import LabError
from msalab.cluster import manage, offline


def test_macos_is_sent_to_kind(monkeypatch):
    monkeypatch.setattr(offline.platform, "system", lambda: "Darwin")
    with pytest.raises(LabError) as err:
        offline.preflight()
    assert "Linux" in err.value.problem and "--provider kind" in err.value.fix


def test_no_root_is_explained(monkeypatch):
    monkeypatch.setattr(offline.platform, "system", lambda: "Linux")
    monkeypatch.setattr(offline.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError) as err:
        offline.preflight()
    assert "root" in err.value.problem and "sudo" in err.value.fix


def test_busy_port_is_named(monkeypatch):
    if offline._running():
        pytest.skip("a course cluster is running: its own ports are not a conflict")
    monkeypatch.setattr(offline.os, "geteuid", lambda: 0)
    monkeypatch.setattr(offline.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(offline.Path, "exists", lambda self: True)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 10259))
        sock.listen()
        with pytest.raises(LabError) as err:
            offline.preflight()
    assert "10259 (for kube-scheduler" in err.value.problem and "cluster down" in err.value.fix


def test_kubeconfig_without_a_cluster_says_how_to_start_one(monkeypatch, tmp_path):
    monkeypatch.setenv("MSALAB_CLUSTER_HOME", str(tmp_path))
    with pytest.raises(LabError) as err:
        manage.kubeconfig()
    assert "make cluster" in err.value.fix


def test_a_lab_without_a_cluster_stops_with_one_message(monkeypatch, tmp_path):
    from msalab import k8s

    monkeypatch.setenv("MSALAB_CLUSTER_HOME", str(tmp_path))
    with pytest.raises(LabError) as err:
        k8s.Cluster()
    shown = err.value._render_traceback_()  # what a notebook prints instead of a traceback
    assert len(shown) == 2 and "no course cluster" in shown[0] and "make cluster" in shown[1]
