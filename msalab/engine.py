"""The Docker engine, through the Docker SDK for Python (`docker`): the one place the course
talks to it, so every engine error reaches the learner as a LabError with the command that
fixes it. images.py builds the course's images with it, components.py runs containers.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import docker
import requests

from . import paths
from .errors import LabError

DOCKER_FIX = "make docker   (Linux: installs and starts Docker; macOS/Windows: start Docker Desktop)"
COURSE_LABEL = "msalab.course"  # on every container the course starts (python -m msalab clean removes them)
BUILD_TIMEOUT_S = 1800
# Connection refused, socket missing, engine gone mid-call: all say the engine is not there.
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)

_clients: dict[float, docker.DockerClient] = {}


def client(timeout: float = 60) -> docker.DockerClient:
    """A client of the engine the docker CLI would use; LabError when it does not answer."""
    if timeout not in _clients:
        with engine_errors("connecting to the Docker engine"):
            if os.environ.get("DOCKER_HOST"):  # with its TLS settings, as the CLI reads them
                _clients[timeout] = docker.from_env(timeout=int(timeout))
            else:
                _clients[timeout] = docker.DockerClient(base_url=_context_url(), timeout=int(timeout))
    return _clients[timeout]


def _context_url() -> str | None:
    """The docker CLI's current context (Docker Desktop's socket, say); None: the default socket."""
    try:
        context = docker.ContextAPI.get_current_context()
    except docker.errors.DockerException:
        return None
    return context.Host if context and context.Host else None


def _reason(error: Exception) -> str:
    if isinstance(error, docker.errors.APIError):
        return str(error.explanation or error)
    return str(error).strip() or type(error).__name__


@contextmanager
def engine_errors(action: str, fix: str = DOCKER_FIX) -> Iterator[None]:
    """Turn what the SDK raises into a LabError: `action` failed, why, and how to fix it."""
    try:
        yield
    except docker.errors.APIError as error:  # the engine answered: the request itself is wrong
        raise LabError(f"{action} failed: {_reason(error)}", fix) from error
    except ENGINE_ERRORS as error:
        raise LabError(f"{action} failed, the Docker engine does not answer: {_reason(error)}", DOCKER_FIX) from error


def docker_available() -> bool:
    """True when the engine answers (a client library alone is not enough)."""
    try:
        return client(timeout=20).ping()
    except (LabError, *ENGINE_ERRORS):
        return False


def require_docker() -> None:
    if not docker_available():
        raise LabError("Docker is not installed or its engine is not running", DOCKER_FIX)


def info() -> dict:
    with engine_errors("asking the Docker engine for its version"):
        return client().info()


def image_present(ref: str) -> bool:
    try:
        client().images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False
    except (LabError, *ENGINE_ERRORS):
        return False


def image_size_mb(ref: str) -> float:
    with engine_errors(f"inspecting {ref}"):
        return client().images.get(ref).attrs["Size"] / 1e6


def pull(ref: str, timeout: float) -> bool:
    """True when the engine could pull ref within timeout (it cancels the pull when we hang up)."""
    try:
        client(timeout).images.pull(ref)
        return True
    except (LabError, *ENGINE_ERRORS):
        return False


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _build_log(chunks: Iterable[dict]) -> str:
    return "".join(chunk.get("stream") or chunk.get("error") or "" for chunk in chunks)


def build(context: Path, ref: str, fix: str, buildargs: dict[str, str] | None = None,
          labels: dict[str, str] | None = None) -> None:
    """docker build of a context folder (the engine's classic builder: the course's Dockerfiles
    need nothing of BuildKit); LabError with the log's last lines when a step fails."""
    try:
        client(BUILD_TIMEOUT_S).images.build(path=str(context), tag=ref, buildargs=buildargs or {},
                                             labels=labels or {}, rm=True, forcerm=True)
    except docker.errors.BuildError as error:
        raise LabError(f"docker build of {ref} failed:\n{_tail(_build_log(error.build_log))}", fix) from error
    except ENGINE_ERRORS as error:
        raise LabError(f"docker build of {ref} failed: {_reason(error)}", DOCKER_FIX) from error


def import_rootfs(tar_chunks: Iterable[bytes], ref: str, changes: list[str], fix: str) -> None:
    """docker import: a root file system (a tar stream) as the image ref."""
    repository, tag = ref.rsplit(":", 1)
    with engine_errors(f"importing {ref}", fix):
        client(BUILD_TIMEOUT_S).api.import_image_from_stream(tar_chunks, repository, tag, changes=changes)


def build_small_image(image: str, files: dict[str, Path], dockerfile: str) -> None:
    """An image from a few files and a Dockerfile (the cluster's binaries); skipped when present."""
    if image_present(image):
        return
    context = paths.cache_dir() / "image-context" / image.replace("/", "_").replace(":", "_")
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy2(source, context / name)
    (context / "Dockerfile").write_text(dockerfile)
    build(context, image, f"remove {context} and rerun")
    print(f"  image {image}: built", flush=True)


def course_containers(label: str = COURSE_LABEL, all_states: bool = True) -> list:
    """The containers that carry the label (running ones only unless all_states)."""
    with engine_errors("listing the course's containers"):
        return client().containers.list(all=all_states, filters={"label": label})


def remove_container(name: str) -> bool:
    """docker rm --force; True if there was one."""
    try:
        client().containers.get(name).remove(force=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as error:
        if error.status_code == 409:  # already being removed (an --rm container that ended)
            return True
        raise LabError(f"removing container {name} failed: {_reason(error)}", DOCKER_FIX) from error
