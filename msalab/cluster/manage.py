"""python -m msalab cluster up|down|status|kubeconfig, and msalab kubectl -- ARGS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from .. import paths
from ..errors import LabError
from ..workshop import mode as workshop_mode
from . import external, hostpaths, kind, netfilter, offline, policyrules, servicerange


def _provider_record():
    return paths.cluster_dir() / "provider"


def choose_provider() -> tuple[str, str]:
    """kind where kind and Docker work and images can be pulled; offline otherwise."""
    from .. import engine

    if not engine.docker_available():
        return "offline", "Docker is not running, so kind cannot run"
    if kind.kind_binary() is None and shutil.which("go") is None:
        return "offline", "kind is not installed"
    ok, why = kind.node_image_available()
    return ("kind", why) if ok else ("offline", why)


def current_provider() -> str | None:
    """offline, kind, None (no cluster), workshop: in a student's server (msalab.workshop.mode),
    or external: a cluster of one's own, named by MSALAB_KUBECONFIG (msalab.cluster.external)."""
    if workshop_mode.namespace():
        return "workshop"
    if external.in_use():
        return "external"
    record = _provider_record()
    return record.read_text().strip() if record.exists() else None


def node_shell(command: str) -> str:
    """A shell command on the course cluster's node: this machine (offline), or kind's node
    container; what it printed."""
    provider = current_provider()
    if provider == "kind":
        return kind.node_shell(command)
    if provider != "offline":
        raise LabError("only the course's own cluster's node can be reached from here", "python -m msalab cluster up")
    try:
        return subprocess.run(["sh", "-c", command], check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as err:
        raise LabError(f"on the cluster's node, `{command}` failed: {(err.stderr or '').strip()[-300:]}",
                       "python -m msalab cluster status") from err


def _not_for_external(command: str) -> None:
    if external.in_use():
        raise LabError(f"{external.KUBECONFIG_VARIABLE} is set: msalab uses that cluster and never starts or stops it",
                       f"unset {external.KUBECONFIG_VARIABLE}; then python -m msalab cluster {command}")


def up(provider: str | None = None) -> str:
    _not_for_external("up")
    if provider is None:
        provider, why = choose_provider()
        print(f"[cluster] provider: {provider} ({why})", flush=True)
    active = current_provider()
    if active and active != provider:
        raise LabError(f"a {active} cluster is already up", "python -m msalab cluster down first")
    from .. import images

    shop_image = images.build_shop_image()
    _provider_record().write_text(provider)
    if provider == "kind":
        kind.up([shop_image])
    else:
        offline.up([shop_image])
    return provider


def load_images(images: list[str]) -> None:
    """Docker images into the running cluster's container runtime, so pods never pull them."""
    provider = current_provider()
    if provider == "offline":
        offline.import_images(images, offline.containerd_bin() / "ctr")
    elif provider == "kind":
        kind.load_images(images)
    elif provider == "external":
        external.push_images(images)
    else:
        raise LabError("no course cluster is running", "make cluster   (python -m msalab cluster up)")


def down() -> list[str]:
    _not_for_external("down")
    removed = offline.down()
    # The offline cluster's pods run in this host's network: a workshop's policy enforcer
    # killed with them leaves its rules, and a workshop's hub its volume (msalab.workshop).
    try:
        removed += [f"policy enforcer's {item}" for item in policyrules.remove_leftovers()]
    except LabError as err:
        print(f"[down] {err}", flush=True)
    if hostpaths.WORKSHOP_VOLUMES.exists():
        shutil.rmtree(hostpaths.WORKSHOP_VOLUMES)
        removed.append(str(hostpaths.WORKSHOP_VOLUMES))
    removed += kind.down()
    _provider_record().unlink(missing_ok=True)
    return removed


def kubeconfig() -> str:
    provider = current_provider()
    if provider is None:
        raise LabError("no course cluster is running", "make cluster   (python -m msalab cluster up)")
    if provider == "workshop":
        return workshop_mode.kubeconfig()
    if provider == "external":
        return external.kubeconfig()
    return str(kind.kubeconfig_path() if provider == "kind" else offline.kubeconfig_path())


def kubelet_log():
    """The kubelet's log where it is a file on this machine (the offline provider), else None."""
    return offline.home() / "logs" / "kubelet.log" if current_provider() == "offline" else None


def kubectl_command() -> list[str]:
    provider = current_provider()
    if provider == "workshop":
        return workshop_mode.kubectl_command()
    built = offline.kubernetes_bin() / "kubectl"
    if provider == "offline" or (provider == "external" and built.exists()):
        return [str(built), f"--kubeconfig={kubeconfig()}"]
    if kind.kubectl_binary() is None:
        raise LabError("kubectl is not installed", kind.kubectl_install_hint())
    return [kind.kubectl_binary(), f"--kubeconfig={kubeconfig()}"]


def status() -> dict:
    provider = current_provider()
    if provider is None:
        return {"provider": None, "running": False}
    nodes = subprocess.run([*kubectl_command(), "get", "nodes", "-o", "json"], capture_output=True, text=True)
    info = {"provider": provider, "kubeconfig": kubeconfig(), "running": nodes.returncode == 0}
    if nodes.returncode == 0:
        info["nodes"] = {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready")
                         for n in json.loads(nodes.stdout)["items"]}
    if provider == "offline":
        info["processes"] = offline.status()["processes"]
    if provider in ("offline", "kind") and info["running"]:
        # The node's routing rules: a pod's call to a Service with no ready pod stays inside.
        info["service_range_kept_inside"] = servicerange.in_place(node_shell("ip rule show"))
    return info


def kubectl(args: list[str]) -> int:
    return subprocess.call([*kubectl_command(), *args], env=os.environ)


def footprint() -> list[str]:
    """What the cluster could leave behind on the host, as lines: `make test` compares this
    before `up` and after `down` (they must be equal)."""
    import re

    import psutil

    lines = []
    # kind itself runs from the build cache; its nerdctl runtime names /var/lib/msalab-kind.
    markers = ("msalab-containerd", "msalab-kubelet", "msalab-kind")
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        cmdline = " ".join(argv)
        # A program run from the course's build cache is a cluster component; a Go build that
        # only names that cache (make test's background build, -o .../cache/go/...) is not.
        from_cache = bool(argv) and "/cache/go/" in argv[0]
        if (from_cache or any(m in cmdline for m in markers)) and "footprint" not in cmdline:
            lines.append(f"process {argv[0]}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    lines += [f"link {m.group(1)}" for m in re.finditer(r"^\d+: ([^:@]+)", links, re.M)]
    # Routing rules (servicerange.py adds two on the offline cluster's node, this machine).
    lines += [f"ip {family} rule {line}" for family in ("-4", "-6")
              for line in subprocess.run(["ip", family, "rule", "show"], capture_output=True, text=True).stdout.splitlines()]
    lines += [f"netns {n}" for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
              if not n.startswith("(")]
    lines += [f"mount {m.split()[1]}" for m in open("/proc/mounts").read().splitlines()
              if any(k in m for k in ("msalab", "kubelet", "/run/netns"))]
    # Fixed host paths the components write whatever their configuration (hostpaths.py).
    lines += hostpaths.footprint_lines()
    # Every table of both families, complete and in order (order is meaning in iptables): a
    # chain, rule or table the cluster left anywhere shows.
    # nftables tables made without iptables (kube-network-policies' own) are not in the dumps below.
    if shutil.which("nft"):
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        lines += [f"nft {line}" for line in tables.splitlines() if line.strip()]
    rules = [f"{family} {line}" for family in netfilter.FAMILIES
             for line in netfilter.comparable(netfilter.dump(family))]
    return sorted(lines) + rules
