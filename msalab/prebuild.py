"""Every Go build `make test` needs, started before anything else and run in the background.

On a machine with nothing cached the course compiles for about half an hour on 2 cores (Part
II's components, the offline cluster, Istio). Run one after another in the foreground, that
time adds to the tests' own. Started first (by `make test`, at the lowest priority), the
builds use the time the set-up spends downloading and the cores the book's and the services'
tests leave idle. Each build holds its lock (gobuild.building), so a step that needs a binary
still being built waits for it, and nothing is built twice. Builds run in the order the tests
need them: Part II's components, then the cluster, then Istio. Only what this machine will
use is built: no component whose upstream image can be pulled, no offline cluster where kind
will run.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Callable

from . import engine, images, paths
from .errors import LabError

DOCKER_WAIT_S = 180  # `make test` starts the engine (make docker) right after this starts


def pid_file():
    return paths.state_dir() / "prebuild.pid"


def wait_for_docker() -> bool:
    """Whether images can be pulled and kind chosen is only known once the engine answers."""
    if shutil.which("docker") is None and shutil.which("dockerd") is None:
        return engine.docker_available()
    deadline = time.monotonic() + DOCKER_WAIT_S
    while not engine.docker_available():
        if time.monotonic() > deadline:
            return False
        time.sleep(5)
    return True


def component_builds() -> list[tuple[str, Callable]]:
    """Part II's Go components (Envoy comes from PyPI, not built), except those whose upstream
    image is here or can be pulled (images build then uses it)."""
    docker = wait_for_docker()
    builds = []
    for name in images.component_names():
        spec = images.component_spec(name)
        if spec["build"] == "envoy" or (docker and images.upstream_if_available(spec["upstream"], None, "")):
            continue
        builds.append((f"component {name}", lambda name=name: images.build_component_binary(name)))
    return builds


def cluster_builds() -> list[tuple[str, Callable]]:
    """The add-ons' binaries (both providers render their manifests with them), then the offline
    cluster and Istio where the cluster will be the offline one (kind uses the release images)."""
    from .cluster import external, gatewayapi, ingress, manage, mesh, offline

    builds = [("contour", ingress.contour_binary), ("helm", gatewayapi.helm_binary),
              ("envoy-gateway", gatewayapi.envoy_gateway_binary)]
    provider, why = manage.choose_provider()
    if provider == "kind":
        print(f"prebuild: the cluster will be kind ({why}): its own components are not built here", flush=True)
        return builds
    from .workshop import netpol  # the workshop test's NetworkPolicy enforcer, last: needed last

    return [("offline cluster", offline.build_all), *builds, ("istio", mesh.build_binaries),
            ("network policy enforcer", netpol.build_binary),
            ("stand-in registry", external.stand_in_registry_binary)]


def main() -> int:
    """Build everything; a failure is reported and skipped (the step that needs it says so again)."""
    from .cluster import gobuild

    try:
        gobuild.require_go()
    except LabError as error:
        print(f"prebuild: nothing built: {error}", flush=True)
        return 0
    pid_file().write_text(str(os.getpid()))  # `msalab clean` stops a build still running
    started, failed = time.monotonic(), []
    try:
        for stage in (component_builds, cluster_builds):
            for label, build in stage():
                try:
                    build()
                except LabError as error:
                    failed.append(label)
                    print(f"prebuild: {label} failed: {error}", flush=True)
    finally:
        pid_file().unlink(missing_ok=True)
    print(f"prebuild: done in {time.monotonic() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


def stop() -> int | None:
    """Stop a prebuild still running (and the go commands under it); its pid, or None."""
    import psutil

    try:
        pid = int(pid_file().read_text())
        proc = psutil.Process(pid)
        if "prebuild" not in " ".join(proc.cmdline()):
            return None
        for child in [*proc.children(recursive=True), proc]:
            child.terminate()
        psutil.wait_procs([proc], timeout=30)
    except (FileNotFoundError, ValueError, psutil.Error):
        return None
    finally:
        pid_file().unlink(missing_ok=True)
    return pid
