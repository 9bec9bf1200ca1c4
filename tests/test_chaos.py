"""Chaos: services killed with SIGKILL and restarted under load; nothing lost or duplicated."""

from __future__ import annotations

import time

import httpx
import psutil

from msalab import ports, procs


def wait_until(condition, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def is_zombie_or_gone(pid: int) -> str:
    try:
        return "zombie" if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else "running"
    except psutil.NoSuchProcess:
        return "gone"


def test_a_service_that_crashes_is_reaped(tmp_path):
    """A service that ends on its own (here: the crash knob) must not stay a zombie of the
    process that started it (the notebook kernel): the chaos test below kills and restarts
    services many times."""
    service = procs.ServiceProcess("crashy", "catalog", ports.free_port(), tmp_path,
                                   env={"SHOP_PRODUCT_COUNT": "5"}, deployment="reap-test").start().wait_ready()
    pid = service.pid
    try:
        assert service.alive()
        assert httpx.post(f"{service.url}/admin/crash/catalog", timeout=5).status_code == 202
        assert wait_until(lambda: not service.alive(), 10), "the crash knob did not end the service"
        assert is_zombie_or_gone(pid) == "gone", "the crashed service was left a zombie"
        service.reap()
        assert service.pid is None and not service.record_path.exists()
        service.start().wait_ready()  # and it can be started again on the same port
        assert service.alive()
        restarted_pid = service.pid
        service.kill_and_restart()
        assert is_zombie_or_gone(restarted_pid) == "gone", "a killed service was left a zombie"
        assert service.alive() and service.pid != restarted_pid
    finally:
        service.stop()
    assert is_zombie_or_gone(service.pid or pid) == "gone"
