"""Start, watch and stop the shop's services as local processes.

Why processes and not containers in Parts I and II: they start in a second, need no Docker,
and behave the same on Linux, macOS and Windows (WSL2). Part III runs the same code from
the shop image on Kubernetes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from . import paths
from .errors import LabError
from .ports import require_free


@dataclass
class ServiceProcess:
    """One running service: `name` is unique (catalog, catalog-green, monolith-2, ...)."""

    name: str
    service: str
    port: int
    data_dir: Path
    version: str = "blue"
    env: dict = field(default_factory=dict)
    deployment: str = "adhoc"
    pid: int | None = None
    # The child's handle, kept so that its exit status is collected (poll/wait): a service
    # that exits on its own would otherwise stay a zombie of this process (the notebook
    # kernel) until the kernel ends. None for a process found through its record only.
    _popen: subprocess.Popen | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return paths.run_dir() / f"{self.deployment}.{self.name}.log"

    @property
    def record_path(self) -> Path:
        return paths.run_dir() / f"{self.deployment}.{self.name}.json"

    def start(self) -> "ServiceProcess":
        if self.alive():
            return self
        require_free(self.port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **{k: str(v) for k, v in self.env.items()}, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "shop", self.service, "--port", str(self.port),
                   "--data-dir", str(self.data_dir), "--version", self.version]
        with open(self.log_path, "ab") as log:
            # A new session: a learner's Ctrl-C in the notebook does not kill the shop.
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, cwd=paths.LAB_SERVICES)
        self.pid, self._popen = proc.pid, proc
        self.record_path.write_text(json.dumps({"name": self.name, "deployment": self.deployment, "pid": proc.pid, "port": self.port,
                                                "service": self.service, "command": command}))
        return self

    def alive(self) -> bool:
        if self.pid is None:
            return False
        if self._own_child():
            return self._popen.poll() is None  # poll also reaps a child that has ended
        try:
            proc = psutil.Process(self.pid)
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def wait_ready(self, timeout_s: float = 30) -> "ServiceProcess":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise LabError(f"{self.name} exited while starting; last log lines:\n{self.tail(8)}",
                               f"read {self.log_path}; then python -m msalab doctor")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise LabError(f"{self.name} did not become ready within {timeout_s:.0f} s",
                       f"read {self.log_path}; then python -m msalab shop stop and try again")

    def stop(self, timeout_s: float = 15) -> None:
        """A graceful stop (SIGTERM): requests in progress are finished first."""
        if self._own_child():
            _end_child(self._popen, timeout_s)
        else:
            _end(self.pid, timeout_s)
        self._forget()

    def kill(self) -> None:
        """An abrupt end (SIGKILL), as a crash or a lost machine would do it."""
        if not self.alive():
            return
        if self._own_child():
            self._popen.kill()
            self._popen.wait(5)  # reaped: no zombie left behind
        else:
            os.kill(self.pid, signal.SIGKILL)
            psutil.Process(self.pid).wait(5)

    def kill_and_restart(self, wait_ready_s: float = 30) -> "ServiceProcess":
        """SIGKILL, then start again on the same port and data (what a supervisor would do)."""
        self.kill()
        self.reap()
        return self.start().wait_ready(wait_ready_s)

    def reap(self) -> None:
        """Forget a process that has died (after a crash) so it can be started again."""
        if self.pid and not self.alive():
            self._forget()

    def _own_child(self) -> bool:
        return self._popen is not None and self._popen.pid == self.pid

    def _forget(self) -> None:
        if self._own_child():
            self._popen.poll()  # collect the exit status if it has ended
        self.pid, self._popen = None, None
        self.record_path.unlink(missing_ok=True)

    def memory_mb(self) -> float:
        """Resident memory (RSS) in MiB: what the OS has given this copy."""
        return psutil.Process(self.pid).memory_info().rss / 2**20

    def tail(self, lines: int = 10) -> str:
        if not self.log_path.exists():
            return "(no log yet)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_entries(self) -> list[dict]:
        """The service's JSON log lines, parsed."""
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    continue
        return entries


def _is_ours(proc: psutil.Process) -> bool:
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return False
    return len(cmd) >= 3 and cmd[1:3] == ["-m", "shop"]


def _end_child(popen: subprocess.Popen, timeout_s: float) -> None:
    """Stop a service this process started, and reap it."""
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(timeout_s)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)


def _end(pid: int | None, timeout_s: float) -> None:
    if pid is None:
        return
    _reap_if_our_zombie(pid)
    try:
        proc = psutil.Process(pid)
        if not _is_ours(proc):
            return  # the pid was reused by something else (or has ended): leave it alone
        proc.terminate()
        proc.wait(timeout_s)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except psutil.NoSuchProcess:
        pass


def _reap_if_our_zombie(pid: int) -> None:
    """A child of this process that has ended is a zombie until it is waited for; its
    command line cannot be read, so _is_ours would skip it. waitpid only touches our own
    children, so this never affects another program's process."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def stop_all(deployment: str = "*") -> list[str]:
    """Stop every service the labs started (found through their records), remove records.
    With a deployment name, only that deployment's (a lab's leftovers from an earlier run)."""
    stopped = []
    for record_path in sorted(paths.run_dir().glob(f"{deployment}.*.json")):
        record = json.loads(record_path.read_text())
        _end(record["pid"], 10)
        stopped.append(record["name"])
        record_path.unlink(missing_ok=True)
    if deployment == "*":  # and what a supervisord of Part II's lab 8 still runs
        from .supervisor import Supervisor

        if Supervisor(None).shutdown():
            stopped.append("supervisord")
    return stopped


def running() -> list[dict]:
    records = []
    for record_path in sorted(paths.run_dir().glob("*.json")):
        record = json.loads(record_path.read_text())
        try:
            record["alive"] = _is_ours(psutil.Process(record["pid"]))
        except psutil.NoSuchProcess:
            record["alive"] = False
        records.append(record)
    return records
