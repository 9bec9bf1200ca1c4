"""Part II's components as processes (msalab.componentprocs, a workshop student's server): the
container's paths mapped to the student's folders, and a real process started, measured,
listed and stopped, as `docker run -d` / `docker rm -f` would."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import psutil
import pytest

from msalab import componentprocs
from msalab.errors import LabError

CONFIG, DATA = Path("/home/s/cfg"), Path("/home/s/data")


@pytest.mark.parametrize("text, expected", [
    ("/data", "/home/s/data"),
    ("--data-dir=/data", "--data-dir=/home/s/data"),
    ("/data/wal", "/home/s/data/wal"),
    ('path: "/data"', 'path: "/home/s/data"'),
    ("dir: /data\nnext: 1", "dir: /home/s/data\nnext: 1"),
    ("--config.file=/etc/msalab/prometheus.yml", "--config.file=/home/s/cfg/prometheus.yml"),
    ("/database", "/database"),            # another word: left alone
    ("/srv/data", "/srv/data"),
    ("http://host/data", "http://host/data"),
])
def test_container_paths_become_the_students_folders(text, expected):
    assert componentprocs._in_folders(text, CONFIG, DATA) == expected


@pytest.fixture
def component_bin(tmp_path, monkeypatch):
    """A 'component' binary: a copy of the shell, so that the process's own executable is the
    component's path (which is how componentprocs tells it from a process that reused its pid)."""
    monkeypatch.setenv("MSALAB_HOME", str(tmp_path / "home"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy("/bin/sh", bin_dir / "component")
    monkeypatch.setattr(componentprocs, "COMPONENT_BIN", bin_dir)
    config = tmp_path / "config"
    config.mkdir()
    (config / "app.yml").write_text("data: /data/state\n")
    yield config
    for process, _ in componentprocs.listed():  # a failed test leaves nothing running
        componentprocs.remove(process)


def _wait_for(condition, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_a_component_runs_is_measured_and_stops(component_bin):
    componentprocs.run("ticker-1", "component", component_bin, ["-c", "echo started in /data; sleep 300"])
    assert componentprocs.running("ticker-1")
    data = componentprocs._home("ticker-1") / "data"
    assert (component_bin / "app.yml").read_text() == f"data: {data}/state\n"  # the config's paths mapped
    assert _wait_for(lambda: "started in" in componentprocs.logs("ticker-1"))
    assert componentprocs.logs("ticker-1").strip() == f"started in {data}"
    assert componentprocs.memory_bytes("ticker-1") > 0
    assert componentprocs.listed() == [("ticker-1", "component")]
    pid = int((componentprocs._home("ticker-1") / "pid").read_text())

    assert componentprocs.remove("ticker-1") is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not componentprocs._home("ticker-1").exists() and componentprocs.listed() == []
    assert componentprocs.remove("ticker-1") is False  # removing twice: nothing to stop, no error
    with pytest.raises(LabError, match="never started"):
        componentprocs.logs("ticker-1")


def test_a_process_that_ignores_term_is_killed(component_bin):
    componentprocs.run("stubborn-1", "component", component_bin,
                       ["-c", "trap '' TERM; echo ignoring TERM; while :; do sleep 1; done"])
    assert _wait_for(lambda: "ignoring TERM" in componentprocs.logs("stubborn-1"))
    started = time.monotonic()
    assert componentprocs.remove("stubborn-1") is True
    assert time.monotonic() - started >= 9  # TERM was given its 10 s before KILL
    assert not componentprocs.running("stubborn-1")


def test_a_reused_pid_is_not_taken_for_the_component(component_bin):
    """A recorded pid that now belongs to another program (the component died, the pid was
    reused) is not 'running', and remove() never signals it."""
    home = componentprocs._home("ghost-1")
    home.mkdir(parents=True)
    (home / "pid").write_text(str(os.getpid()))  # this test's own process: not the component
    (home / "name").write_text("component")
    assert not componentprocs.running("ghost-1")
    assert componentprocs.remove("ghost-1") is False
    assert psutil.pid_exists(os.getpid())
