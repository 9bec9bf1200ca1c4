"""Part II's real components as containers: etcd, Envoy, Loki, Jaeger, Prometheus, fortio.

    etcd = components.start("etcd")                      # waits until it answers
    prom = components.start("prometheus", config_files={"prometheus.yml": text})
    prom.urls["http"], prom.memory_mb(), prom.cpu_seconds(), prom.logs()
    components.stop("prometheus"); components.stop_all()

Versions, images and ports are pinned in versions.yaml (`components`). The image is the
upstream one when it is present or can be pulled, else an equivalent one built here from
package registries (images.base_image decides the same way for the shop's base).

Every container:
- uses `--network host`: the labs' services are host processes on 127.0.0.1, and the
  components must reach them (Prometheus scrapes them, Envoy routes to them) and be reached
  by them on fixed 127.0.0.1 ports; each component is configured to listen on 127.0.0.1
  only, so nothing is exposed beyond this machine. Docker Desktop (macOS, Windows) needs
  host networking enabled: Settings > Resources > Network > Enable host networking.
- runs as nobody (65534), keeps its state on a tmpfs (/data, gone when it stops) and reads
  the lab's config files read-only from /etc/msalab;
- carries the labels msalab.course (so `python -m msalab clean` removes it) and
  msalab.component=NAME (how running() finds the course's components and nothing else).
"""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx

from . import componentprocs, engine, images, paths, ports
from .errors import LabError

# What versions.yaml pins, and the image to run: images.py finds or builds it; this module only runs it.
names, spec, offline_ref = images.component_names, images.component_spec, images.component_offline_ref
image_for = images.component_image

LABEL = "msalab.component"
USER = images.COMPONENT_USER
CONFIG_DIR, DATA_DIR = "/etc/msalab", "/data"
READY_TIMEOUT_S = 60
START_FIX = "from msalab import components; components.start({name!r})"
STOP_FIX = "python -m msalab components stop   (stops the course's components)"
STATUS_FIX = "python -m msalab components status"

# Default arguments and config files; {port names} are filled from versions.yaml.
ARGS = {
    "etcd": ["--name", "msalab", "--data-dir", f"{DATA_DIR}/etcd",
             "--listen-client-urls", "http://127.0.0.1:{client}", "--advertise-client-urls", "http://127.0.0.1:{client}",
             "--listen-peer-urls", "http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", "http://127.0.0.1:{peer}",
             "--initial-cluster", "msalab=http://127.0.0.1:{peer}"],
    # No hot restart: with the host network its abstract socket would clash between Envoys.
    "envoy": ["-c", f"{CONFIG_DIR}/envoy.yaml", "--disable-hot-restart", "--log-level", "warn"],
    "loki": [f"-config.file={CONFIG_DIR}/loki.yaml"],
    "jaeger": [f"--config={CONFIG_DIR}/jaeger.yaml"],
    "prometheus": [f"--config.file={CONFIG_DIR}/prometheus.yml", f"--storage.tsdb.path={DATA_DIR}/prometheus",
                   "--web.listen-address=127.0.0.1:{http}"],
    "fortio": ["server", "-http-port", "127.0.0.1:{http}", "-grpc-port", "127.0.0.1:{grpc}", "-redirect-port",
               "disabled", "-tcp-port", "disabled", "-udp-port", "disabled", "-data-dir", DATA_DIR],
}
CONFIGS = {
    "envoy": {"envoy.yaml": """\
admin:
  address:
    socket_address: {{address: 127.0.0.1, port_value: {admin}}}
"""},
    "loki": {"loki.yaml": f"""\
auth_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: {{http}}
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: {{grpc}}
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: {DATA_DIR}/loki
  storage:
    filesystem:
      chunks_directory: {DATA_DIR}/loki/chunks
      rules_directory: {DATA_DIR}/loki/rules
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
schema_config:
  configs:
    - from: 2024-01-01
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
ingester:
  lifecycler:
    min_ready_duration: 0s
frontend:
  scheduler_dns_lookup_period: 3s   # ready in about 4 s, not 11 (sooner logs errors while its scheduler starts)
frontend_worker:
  dns_lookup_duration: 1s
analytics:
  reporting_enabled: false
"""},
    "jaeger": {"jaeger.yaml": """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc}
      http:
        endpoint: 127.0.0.1:{otlp_http}
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""},
    "prometheus": {"prometheus.yml": """\
global:
  scrape_interval: 5s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{http}"]
"""},
}


def container_name(name: str) -> str:
    return f"msalab-{name}"


# --- the component ------------------------------------------------------------------------

@dataclass
class Component:
    name: str
    image: str
    container: str
    ports: dict[str, int]

    @property
    def urls(self) -> dict[str, str]:
        return {role: f"http://127.0.0.1:{port}" for role, port in self.ports.items()}

    @property
    def url(self) -> str:
        """The URL of the port that answers the readiness probe (the main one)."""
        return self.urls[spec(self.name)["ready"]["port"]]

    def memory_mb(self) -> float:
        """Memory its processes use (MiB): the cgroup's usage minus inactive file cache (as docker
        stats counts) and minus its tmpfs data, which would be on disk in a real deployment
        (etcd alone preallocates 128 MiB of write-ahead log there)."""
        if componentprocs.in_use():
            return componentprocs.memory_bytes(self.container) / 2**20
        usage, stat = _memory(self.container)
        if "total_inactive_file" in stat:  # cgroup v1 (the engine's copy has no total_shmem: cache less file pages)
            inactive = stat["total_inactive_file"]
            tmpfs = stat.get("total_shmem", stat["total_cache"] - stat["total_active_file"] - inactive)
        else:
            inactive, tmpfs = stat.get("inactive_file", 0), stat.get("shmem", 0)
        return (usage - inactive - tmpfs) / 2**20

    def cpu_seconds(self) -> float:
        """CPU time used since the container started (all its processes, user and system)."""
        if componentprocs.in_use():
            return componentprocs.cpu_seconds(self.container)
        cgroup = _cgroup_files(self.container)
        if cgroup is None:
            return _engine_stats(self.container)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
        if cgroup["cpu"].name == "cpu.stat":  # cgroup v2
            return _keyed(cgroup["cpu"])["usage_usec"] / 1e6
        return int(cgroup["cpu"].read_text()) / 1e9

    def logs(self, tail: int | None = None) -> str:
        """What the component wrote (stdout and stderr together)."""
        if componentprocs.in_use():
            return componentprocs.logs(self.container, tail)
        with engine.engine_errors(f"reading the logs of {self.container}", f"is it running? {STATUS_FIX}"):
            return _container(self.container).logs(tail=tail or "all").decode(errors="replace")

    def running(self) -> bool:
        if componentprocs.in_use():
            return componentprocs.running(self.container)
        state = _state(self.container)
        return bool(state and state["Running"])


def _container(name: str):
    return engine.client().containers.get(name)


def _state(container: str) -> dict | None:
    """The container's state (docker inspect .State); None when there is no such container."""
    try:
        return _container(container).attrs["State"]
    except docker.errors.NotFound:
        return None


def _memory(container: str) -> tuple[int, dict[str, int]]:
    """The cgroup's memory usage and its memory.stat, from /sys/fs/cgroup or else the engine."""
    cgroup = _cgroup_files(container)
    if cgroup is None:
        memory = _engine_stats(container)["memory_stats"]
        return memory["usage"], memory.get("stats", {})
    return int(cgroup["memory_usage"].read_text()), _keyed(cgroup["memory_stat"])


def _keyed(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def _cgroup_files(container: str) -> dict[str, Path] | None:
    """The container's cgroup files under /sys/fs/cgroup (v1 or v2); None when the engine
    runs elsewhere (Docker Desktop's VM) and the host cannot see them."""
    try:
        attrs = _container(container).attrs
    except docker.errors.NotFound:
        return None
    pid, container_id = attrs["State"]["Pid"], attrs["Id"]
    if not pid or not Path(f"/proc/{pid}/cgroup").exists():
        return None
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    if not any(container_id in line for line in lines):  # a local pid that is not the container's
        return None
    v1 = {c: rel for _, controllers, rel in (line.split(":", 2) for line in lines) for c in controllers.split(",")}
    root = Path("/sys/fs/cgroup")
    if "memory" in v1 and "cpuacct" in v1:
        files = {"memory_usage": root / "memory" / v1["memory"].lstrip("/") / "memory.usage_in_bytes",
                 "memory_stat": root / "memory" / v1["memory"].lstrip("/") / "memory.stat",
                 "cpu": root / "cpuacct" / v1["cpuacct"].lstrip("/") / "cpuacct.usage"}
    else:
        folder = root / v1.get("", "").lstrip("/")
        files = {"memory_usage": folder / "memory.current", "memory_stat": folder / "memory.stat",
                 "cpu": folder / "cpu.stat"}
    return files if all(f.exists() for f in files.values()) else None


def _engine_stats(container: str) -> dict:
    """The engine's stats for the container (what `docker stats` reads)."""
    with engine.engine_errors(f"reading the stats of {container}", f"is it running? {STATUS_FIX}"):
        return _container(container).stats(stream=False, one_shot=True)


# --- running ------------------------------------------------------------------------------

def _config_dir(name: str, config_files: dict[str, str | Path] | None, folder_name: str = "") -> Path:
    """The defaults, then the lab's files (text or a path) by file name, readable by nobody."""
    folder = paths.state_dir() / "components" / (folder_name or name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    port_of = spec(name)["ports"]
    files = {file: text.format(**port_of) for file, text in CONFIGS.get(name, {}).items()}
    for file, content in (config_files or {}).items():
        files[file] = Path(content).read_text() if isinstance(content, Path) else content
    for file, text in files.items():
        (folder / file).write_text(text)
        (folder / file).chmod(0o644)
    return folder


def _check_ports(name: str) -> None:
    for role, port in spec(name)["ports"].items():
        if not ports.is_free(port):
            raise LabError(f"port {port} ({name} {role}) is in use by {ports.who_uses(port)}",
                           f"stop that program; if it is a course component: {STOP_FIX}")


def _run(container: str, name: str, image: str, config: Path, args: list[str]):
    """docker run --detach: the component's container, set up as the module docstring says."""
    return engine.client(120).containers.run(
        image, args, name=container, detach=True, entrypoint=[spec(name)["binary"]],
        labels={engine.COURSE_LABEL: "component", LABEL: name},
        network_mode="host",  # why: see the module docstring (Docker Desktop: enable host networking)
        user=USER, tmpfs={DATA_DIR: "rw,uid=65534,gid=65534,mode=0755", "/tmp": "rw,mode=1777"},
        volumes={str(config): {"bind": CONFIG_DIR, "mode": "ro"}})


def start(name: str, config_files: dict[str, str | Path] | None = None, args: list[str] | None = None,
          timeout: float = READY_TIMEOUT_S) -> Component:
    """Start a component (replacing a previous one of the same name) and wait until it answers.
    config_files: {file name: text or Path}, mounted read-only in /etc/msalab (they replace the
    defaults of the same name); args: the command's arguments instead of the defaults."""
    s = spec(name)
    processes = componentprocs.in_use()  # a workshop's server: no container engine there
    if not processes:
        engine.require_docker()
    stop(name)
    _check_ports(name)
    image = str(componentprocs.binary(name)) if processes else image_for(name)[0]
    config = _config_dir(name, config_files)
    args = [a.format(**s["ports"]) for a in ARGS[name]] if args is None else args
    if processes:
        componentprocs.run(container_name(name), name, config, args)
    else:
        with engine.engine_errors(f"docker run for {name}", f"{STOP_FIX}, then start again"):
            _run(container_name(name), name, image, config, args)
    component = Component(name, image, container_name(name), dict(s["ports"]))
    try:
        _wait_ready(component, timeout)
    except LabError:
        stop(name)
        raise
    return component


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).is_success
    except httpx.HTTPError:
        return False


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait_ready(component: Component, timeout: float) -> None:
    ready = spec(component.name)["ready"]
    url = component.urls[ready["port"]] + ready["path"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not component.running():
            raise LabError(f"{component.name} ({component.image}) exited at start; its last lines:\n"
                           f"{component.logs(tail=20)}",
                           "fix what the log says (often the config files), then start again")
        if _answers(url) and all(_listening(p) for p in component.ports.values()):
            return
        time.sleep(0.3)
    raise LabError(f"{component.name} did not answer {url} within {timeout:.0f} s; its last lines:\n"
                   f"{component.logs(tail=20)}", "fix what the log says, then start again (or pass a longer timeout)")


def stop(name: str) -> bool:
    """Remove the component's container (state is on a tmpfs: gone too); True if there was one."""
    if componentprocs.in_use():
        return componentprocs.remove(container_name(name))
    if not engine.docker_available():
        return False
    return engine.remove_container(container_name(name))


def _containers(all_states: bool = False) -> list[list[str]]:
    """[container name, image as given to run, component name] of the course's components."""
    return [[c.name, c.attrs["Config"]["Image"], c.labels[LABEL]]
            for c in engine.course_containers(LABEL, all_states)]


def stop_all() -> list[str]:
    """Remove every component container of the course (and any one-shot run left over)."""
    if componentprocs.in_use():
        return [process for process, _ in componentprocs.listed() if componentprocs.remove(process)]
    if not engine.docker_available():
        return []
    found = [c[0] for c in _containers(all_states=True)]
    for container in found:
        engine.remove_container(container)
    return found


def running() -> list[Component]:
    if componentprocs.in_use():
        return [Component(name, str(componentprocs.binary(name)), process, dict(spec(name)["ports"]))
                for process, name in componentprocs.listed() if process == container_name(name)]
    if not engine.docker_available():
        return []
    return [Component(name, image, container, dict(spec(name)["ports"]))
            for container, image, name in _containers() if container == container_name(name)]


def require(name: str) -> Component:
    """The running component, or a LabError saying how to start it."""
    for component in running():
        if component.name == name:
            return component
    spec(name)  # an unknown name says so
    raise LabError(f"{name} is not running", START_FIX.format(name=name))


def run_once(name: str, args: list[str], timeout: float = 300) -> str:
    """Run the component's command once to its end (fortio load ...) and return what it printed."""
    if componentprocs.in_use():
        return _run_once_as_process(name, args, timeout)
    engine.require_docker()
    image, _ = image_for(name)
    container = f"{container_name(name)}-run-{uuid.uuid4().hex[:8]}"
    what = f"{name} {' '.join(args)}"
    with engine.engine_errors(f"docker run for {what}"):
        run = _run(container, name, image, _config_dir(name, None, f"{name}-run"), args)
    try:  # removed however it ends, as docker run --rm
        exit_code = _wait(run, what, timeout)
        if exit_code != 0:
            raise LabError(f"{what} failed:\n{images._tail(run.logs(stdout=False).decode(errors='replace'))}",
                           "check the arguments")
        return run.logs(stderr=False).decode(errors="replace")
    finally:
        engine.remove_container(container)


def _run_once_as_process(name: str, args: list[str], timeout: float) -> str:
    process = f"{container_name(name)}-run-{uuid.uuid4().hex[:8]}"
    exit_code, printed, errors = componentprocs.run_once(process, name, _config_dir(name, None, f"{name}-run"),
                                                         args, timeout)
    if exit_code != 0:
        raise LabError(f"{name} {' '.join(args)} failed:\n{images._tail(errors)}", "check the arguments")
    return printed


def _wait(container, what: str, timeout: float) -> int:
    """Its exit code once it ends; LabError when it runs longer than timeout."""
    try:
        return container.wait(timeout=timeout)["StatusCode"]
    except engine.ENGINE_ERRORS as error:  # a read timeout: the engine is still waiting for it
        state = _state(container.name)
        if state and state["Running"]:
            raise LabError(f"{what} did not end within {timeout:.0f} s",
                           "ask for less work, or a longer timeout") from error
        raise LabError(f"waiting for {what} failed: {error}", engine.DOCKER_FIX) from error
