"""The helper package: clear errors, doctor, and nothing left running."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from msalab import LabError, ports, procs, shop


def test_busy_port_gives_the_fix_command():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LabError) as err:
            shop.Monolith("busy-port", port=port).start()
    assert f"port {port} is in use" in str(err.value) and "python -m msalab shop stop" in err.value.fix


def test_doctor_reports_a_busy_lab_port_and_fails():
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", ports.GATEWAY))
        except OSError:
            pytest.fail("port 8100 is already busy on this machine: stop what uses it first")
        sock.listen()
        run = subprocess.run([sys.executable, "-m", "msalab", "doctor"], capture_output=True, text=True)
    assert run.returncode == 1
    assert "port 8100 (gateway) is in use" in run.stdout and "fix:" in run.stdout


def test_stop_all_leaves_nothing_running():
    deployment = shop.Monolith("stop-all", port=ports.free_port()).start()
    pid = deployment["monolith"].pid
    assert procs.stop_all("stop-all") == ["monolith"]
    assert not deployment["monolith"].alive()
    assert all(r["pid"] != pid for r in procs.running())
    deployment.cleanup()
    assert not deployment.data.exists()


def test_a_service_that_cannot_start_says_why(tmp_path):
    bad = procs.ServiceProcess("bad", "catalog", ports.free_port(), tmp_path, env={"SHOP_PRODUCT_COUNT": "many"},
                               deployment="bad")
    with pytest.raises(LabError, match="exited while starting"):
        bad.start().wait_ready(10)
    bad.stop()
