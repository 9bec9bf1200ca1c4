"""Where things live. Everything the course creates outside the repository is under
state_dir() (default ~/.cache/msalab), so `make clean` can remove all of it."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
LAB_SERVICES = REPO / "lab-services"


def state_dir() -> Path:
    path = Path(os.environ.get("MSALAB_HOME", Path.home() / ".cache" / "msalab"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Builds and downloads, keyed by version; kept apart so tests with a private
    MSALAB_HOME still reuse them (MSALAB_CACHE moves it)."""
    default = Path.home() / ".cache" / "msalab" / "cache"
    path = Path(os.environ.get("MSALAB_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cluster_dir() -> Path:
    """The course cluster's state (one per machine, whoever started it; MSALAB_CLUSTER_HOME
    moves it). Apart from MSALAB_HOME, so tests with a private home find the cluster."""
    path = Path(os.environ.get("MSALAB_CLUSTER_HOME", Path.home() / ".cache" / "msalab" / "cluster"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    """One JSON file per running service process: how `stop` finds what labs started."""
    path = state_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(deployment: str) -> Path:
    return state_dir() / "data" / deployment


def versions() -> dict:
    return yaml.safe_load((REPO / "versions.yaml").read_text())


def kind_only_labs() -> dict[str, str]:
    """Labs that need kind with internet access (labs/kind-only.yaml): lab path under labs/ -> why."""
    import yaml

    return yaml.safe_load((REPO / "labs" / "kind-only.yaml").read_text()) or {}
