"""supervisord, a real process supervisor, keeping shop services running (Part II, lab 8):
self-healing as a single machine does it, before Kubernetes does it for a cluster.

    sup = Supervisor(deployment)      # a running shop.Microservices
    sup.adopt("catalog")              # stop the plain process, run it under supervisord
    sup.status("catalog")             # {"state": "RUNNING", "pid": 1234}
    sup.shutdown()                    # stops supervisord and what it runs
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

from . import paths
from .errors import LabError

CONFIG = """\
[unix_http_server]
file={run}/supervisor.sock

[supervisord]
logfile={run}/supervisord.log
pidfile={run}/supervisord.pid
childlogdir={run}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run}/supervisor.sock
"""

PROGRAM = """
[program:{name}]
command={command}
directory={cwd}
environment={environment}
autorestart=true      ; restart whenever it exits
startsecs=1           ; it must stay up 1 s to count as started
startretries=10
stopasgroup=true
redirect_stderr=true
stdout_logfile={run}/supervised.{name}.log
"""


class Supervisor:
    def __init__(self, deployment) -> None:
        self.deployment = deployment
        self.run = paths.run_dir()
        self.config = self.run / "supervisord.conf"

    def _ctl(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.config), *args],
                                capture_output=True, text=True, timeout=30)
        return result.stdout.strip()

    def adopt(self, name: str) -> None:
        """Run service `name` of the deployment under supervisord instead of as a plain process."""
        if importlib.util.find_spec("supervisor") is None:  # it is run as python -m supervisor.supervisord
            raise LabError("supervisord is not installed", "make setup (installs the course's Python packages)")
        proc = self.deployment[name]
        proc.stop()
        command = f"{sys.executable} -m shop {proc.service} --port {proc.port} --data-dir {proc.data_dir} --version {proc.version}"
        environment = ",".join(f'{k}="{v}"' for k, v in {**proc.env, "PYTHONUNBUFFERED": "1"}.items())
        self.shutdown()
        self.config.touch(mode=0o600)  # it holds the deployment's service key: readable by us only
        self.config.chmod(0o600)
        self.config.write_text(CONFIG.format(run=self.run) + PROGRAM.format(
            name=name, command=command, cwd=paths.LAB_SERVICES, environment=environment, run=self.run))
        subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config)], check=True, timeout=30)
        self.wait_for(name, "RUNNING", 20)

    def program(self, name: str) -> str:
        """The [program:NAME] section as a learner should read it: secret values masked, and
        this machine's paths shortened (<repo>, ~), so it can be shown and shared."""
        section = self.config.read_text().split(f"[program:{name}]")[1]
        for key, value in self.deployment[name].env.items():
            if any(word in key for word in ("KEY", "SECRET", "TOKEN", "PASSWORD")):
                section = section.replace(value, "***")
        return section.replace(str(paths.REPO), "<repo>").replace(str(Path.home()), "~")

    def status(self, name: str) -> dict:
        """{"state": RUNNING | STARTING | BACKOFF | EXITED | ..., "pid": int or None}."""
        fields = self._ctl("status", name).split()
        state = fields[1] if len(fields) > 1 else "UNKNOWN"
        pid = int(fields[3].rstrip(",")) if state == "RUNNING" and len(fields) > 3 else None
        return {"state": state, "pid": pid}

    def wait_for(self, name: str, state: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.status(name)["state"] == state:
                return
            time.sleep(0.2)
        raise LabError(f"supervisord did not get {name} to {state} in {timeout_s:.0f} s",
                       f"read {self.run}/supervised.{name}.log and {self.run}/supervisord.log")

    def shutdown(self) -> bool:
        """Stop supervisord and everything it runs; False when it was not running."""
        if not (self.config.exists() and (self.run / "supervisord.pid").exists()):
            return False
        self._ctl("shutdown")
        deadline = time.monotonic() + 20
        while (self.run / "supervisord.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return True
