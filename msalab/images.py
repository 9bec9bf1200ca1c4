"""`python -m msalab images list|build [--offline]`: the course's container images.

The shop image is built from a wheelhouse (pip download on the host) because pip inside a
build may not reach PyPI. Its base is the official slim Python image; a machine that cannot
pull any image builds an equivalent base from Debian packages (debootstrap + docker import).
Everything downloaded is cached under paths.cache_dir(), so a second build is quick.
Part II's components (versions.yaml `components`) are pulled, or built here the same way;
components.py runs them. This module never imports components.py (one direction only).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from . import engine, paths
from .engine import DOCKER_FIX, docker_available, image_present, image_size_mb
from .errors import LabError

# An imported root file system has no image config; give it what a base image is expected to have.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PULL_TIMEOUT_S = 120  # a blocked registry fails in well under a second; a slow one still gets time
BUILD_TIMEOUT_S = engine.BUILD_TIMEOUT_S
NICE = 19  # Go builds at the lowest priority: they must not starve a cluster or a lab running beside them
COMPONENT_USER = "65534:65534"  # nobody: components.py runs them as this user too


def engine_arch() -> str:
    """The engine's architecture (not the client's: Docker Desktop may run another one)."""
    arch = engine.info()["Architecture"]
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    if arch not in ("x86_64", "aarch64"):
        raise LabError(f"unsupported Docker engine architecture {arch!r}", "use an x86_64 or arm64 machine")
    return arch


# --- what the course uses (versions.yaml) ------------------------------------------------

def _images() -> dict:
    return paths.versions()["images"]


def shop_ref() -> str:
    shop = _images()["shop"]
    return f"{shop['name']}:{shop['tag']}"


def offline_base_ref() -> str:
    offline = _images()["python-base"]["offline"]
    return f"{offline['name']}:{offline['tag']}"


def course_images() -> list[tuple[str, str, str]]:
    """(role, image ref, how to get it) for every image pinned in versions.yaml."""
    rows = []
    for key, spec in _images().items():
        if "name" in spec:
            rows.append((key, f"{spec['name']}:{spec['tag']}", "python -m msalab images build"))
        if "upstream" in spec:
            rows.append((key, spec["upstream"], "pulled from Docker Hub by images build"))
        if "offline" in spec:
            rows.append((f"{key} (offline)", f"{spec['offline']['name']}:{spec['offline']['tag']}",
                         "python -m msalab images build --offline"))
    cluster = paths.versions()["cluster"]
    rows.append(("kind node", cluster["kind"]["node_image"], "pulled by kind (make cluster PROVIDER=kind)"))
    pods = {key: cluster[key]["image"] for key in ("pause", "coredns", "metrics-server", "contour", "envoy-gateway")}
    pods["envoy (Contour's, and Part II's)"] = cluster["envoy"]["image"]
    pods["envoy (Envoy Gateway's)"] = cluster["envoy-gateway"]["envoy"]["image"]
    for key, image in pods.items():
        rows.append((f"cluster {key}", image, "pulled by kind; built by make cluster (offline)"))
    for key, spec in paths.versions()["components"].items():
        offline = f"{spec['offline']['name']}:{spec['offline']['tag']}"
        same = offline == spec["upstream"]  # Envoy: built here under the upstream name, as the cluster does
        rows.append((key, spec["upstream"], "pulled by images build" + (", else built here" if same else "")))
        if not same:
            rows.append((f"{key} (offline)", offline, "python -m msalab images build --offline"))
    return rows


def cache_dir(*parts: str) -> Path:
    path = paths.cache_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- progress ----------------------------------------------------------------------------

@contextmanager
def _step(number: int, total: int, label: str):
    """One line per step: the label now, the outcome and time when it ends."""
    print(f"[{number}/{total}] {label} ...", end=" ", flush=True)
    start = time.monotonic()
    outcome: list[str] = []
    try:
        yield outcome
    except BaseException:
        print(f"failed after {time.monotonic() - start:.1f} s", flush=True)
        raise
    print(f"{' '.join(outcome) or 'done'} in {time.monotonic() - start:.1f} s", flush=True)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- step 1: wheelhouse ------------------------------------------------------------------

def wheelhouse(arch: str) -> tuple[Path, bool]:
    """Linux wheels for the services' requirements.txt, for the image's Python; (dir, reused from cache)."""
    return wheelhouse_for(paths.LAB_SERVICES / "requirements.txt", arch)


def wheelhouse_for(requirements: Path, arch: str, constraints: Path | None = None,
                   python_version: str | None = None) -> tuple[Path, bool]:
    """Linux wheels for a requirements file (and its constraints), for the images' Python
    (versions.yaml `python`, or an exact one); (dir, reused from cache). Cached by the inputs."""
    python_version = python_version or str(paths.versions()["python"])
    inputs = requirements.read_bytes() + (constraints.read_bytes() if constraints else b"") + python_version.encode()
    dest = cache_dir("wheels") / f"{hashlib.sha256(inputs).hexdigest()}-{arch}"
    if dest.is_dir():  # only complete downloads are renamed into place
        return dest, True
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # Binary wheels for the engine's Linux, whatever OS this host runs: no compiler needed.
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--platform", f"manylinux2014_{arch}",
               "--python-version", python_version, "--implementation", "cp",
               "-r", str(requirements), *(["-c", str(constraints)] if constraints else []), "-d", str(partial)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if result.returncode != 0:
        raise LabError(f"pip could not download the wheels of {requirements.name}:\n{_tail(result.stderr)}",
                       "check that this machine reaches PyPI (set HTTPS_PROXY behind a proxy), then rerun")
    partial.rename(dest)
    return dest, False


# --- step 2: base image ------------------------------------------------------------------

_unpullable: set[str] = set()  # pulls that failed in this process: not tried again at every start


def _pull(ref: str) -> bool:
    if ref in _unpullable:
        return False
    pulled = engine.pull(ref, timeout=PULL_TIMEOUT_S)
    if not pulled:
        _unpullable.add(ref)
    return pulled


def upstream_if_available(upstream: str, offline: bool | None, build_here: str) -> tuple[str, str] | None:
    """The pinned upstream image and how it was obtained, if it is here or can be pulled;
    None when the image built here should be used instead. offline: True = never the upstream,
    False = the upstream or an error (naming `build_here`, the command that builds ours)."""
    if offline:
        return None
    if image_present(upstream):
        return upstream, "present"
    if _pull(upstream):
        return upstream, "pulled"
    if offline is False:
        raise LabError(f"cannot pull {upstream} (no registry reachable?)", build_here)
    return None


def base_image(offline: bool | None) -> tuple[str, str]:
    """(image ref, how it was obtained). offline: True = Debian base, False = must pull,
    None = pull if possible, else fall back to the Debian base."""
    upstream = _images()["python-base"]["upstream"]
    found = upstream_if_available(upstream, offline,
                                  "python -m msalab images build --offline   (builds the base from Debian packages)")
    if found:
        return found
    ref, why = offline_base_ref(), "" if offline else f" ({upstream} cannot be pulled)"
    if image_present(ref):
        return ref, f"present{why}"
    print("building from Debian packages, about a minute ...", end=" ", flush=True)
    import_rootfs(debootstrap_rootfs(), ref)
    return ref, f"built{why}"


def _check_can_debootstrap() -> None:
    """debootstrap needs Linux, the tool itself, and root (it runs chroot and mknod)."""
    if not sys.platform.startswith("linux"):
        raise LabError("the offline base image is built with debootstrap, which needs Linux",
                       "run on Linux, or on a machine that can pull images: python -m msalab images build")
    if not (shutil.which("debootstrap") or Path("/usr/sbin/debootstrap").exists()):
        raise LabError("debootstrap is not installed (needed for the offline base image)",
                       "sudo apt-get install debootstrap")
    if os.geteuid() != 0:
        raise LabError("building the offline base image needs root (debootstrap runs chroot)",
                       "sudo -E env PATH=\"$PATH\" python -m msalab images build --offline")


def debootstrap_rootfs() -> Path:
    """A minimal Debian with Python, cached by suite, packages, arch and mirror."""
    spec = _images()["python-base"]["offline"]
    return debootstrap(spec["suite"], spec["packages"], spec.get("mirror"))


def debootstrap(suite: str, packages: list[str], mirror: str | None = None) -> Path:
    """A minimal Debian (--variant=minbase) with these packages, cached by suite, packages,
    arch and mirror. Also the base of the course's kind node (cluster.kindnode)."""
    packages = sorted(packages)
    # No mirror in versions.yaml means debootstrap's own default; set one to use a local mirror.
    mirror = mirror or os.environ.get("MSALAB_DEBIAN_MIRROR", "")
    key = hashlib.sha256(f"{suite} {packages} {os.uname().machine} {mirror}".encode()).hexdigest()[:16]
    dest = cache_dir("rootfs") / f"{suite}-{key}"
    if dest.is_dir():
        return dest
    _check_can_debootstrap()
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    command = [debootstrap, "--variant=minbase", f"--include={','.join(packages)}", suite, str(partial)]
    result = subprocess.run(command + ([mirror] if mirror else []),
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if result.returncode != 0:
        raise LabError(f"debootstrap failed:\n{_tail(result.stdout + result.stderr)}",
                       f"check that this machine reaches {mirror or 'the Debian mirror'} (apt-get update works), then rerun")
    # Package lists and downloaded .debs are only needed to install: keep them out of the image.
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for item in (partial / leftover).glob("*"):
            if item.is_file():
                item.unlink()
    partial.rename(dest)
    return dest


def import_rootfs(rootfs: Path, ref: str, command: str = '["python3"]') -> None:
    """tar the root file system into `docker import`, giving it a PATH and a default command.
    tar, not Python's tarfile: it keeps device nodes and numeric owners exactly as debootstrap made them."""
    fix = f"remove {rootfs} and rerun python -m msalab images build --offline"
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        engine.import_rootfs(iter(lambda: tar.stdout.read(1 << 20), b""), ref,
                             [f"ENV PATH={BASE_PATH}", f"CMD {command}"], fix)
    finally:
        tar.stdout.close()
        tar_failed = tar.wait() != 0
    if tar_failed:
        raise LabError(f"could not import {rootfs} as {ref}: tar failed:\n{_tail(tar.stderr.read().decode())}", fix)


# --- step 3: docker build ----------------------------------------------------------------

def _build_context(into: Path, wheels: Path) -> None:
    """Only what the Dockerfile needs: no caches, data or secrets from the repository."""
    shutil.copy(paths.REPO / _images()["shop"]["dockerfile"], into / "Dockerfile")
    shutil.copy(paths.LAB_SERVICES / "requirements.txt", into / "requirements.txt")
    (into / "wheels").mkdir()
    for wheel in wheels.glob("*.whl"):
        shutil.copy(wheel, into / "wheels" / wheel.name)
    shutil.copytree(paths.LAB_SERVICES / "shop", into / "shop",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite3*"))


def docker_build(ref: str, base: str, wheels: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="msalab-build-") as context:
        _build_context(Path(context), wheels)
        engine.build(Path(context), ref,
                     "fix the error above (lab-services/Dockerfile), then rerun python -m msalab images build",
                     buildargs={"BASE_IMAGE": base},
                     labels={"org.opencontainers.image.version": ref.rsplit(":", 1)[1],
                             "org.opencontainers.image.base.name": base})


def build_shop_image(offline: bool | None = None) -> str:
    """Build msalab/shop:<pinned tag> and return its reference. offline: see base_image()."""
    engine.require_docker()
    ref, arch, start = shop_ref(), engine_arch(), time.monotonic()
    with _step(1, 3, f"wheelhouse for linux/{arch}") as outcome:
        wheels, reused = wheelhouse(arch)
        outcome.append(f"{len(list(wheels.glob('*.whl')))} wheels {'reused from cache' if reused else 'downloaded'}")
    with _step(2, 3, "base image") as outcome:
        base, how = base_image(offline)
        outcome.append(f"{base} {how}")
    with _step(3, 3, f"docker build {ref}") as outcome:
        docker_build(ref, base, wheels)
        outcome.append(f"{image_size_mb(ref):.0f} MB")
    print(f"built {ref} in {time.monotonic() - start:.1f} s")
    return ref


# --- Part II's components (components.py runs them) -------------------------------------

def component_names() -> list[str]:
    return list(paths.versions()["components"])


def component_spec(name: str) -> dict:
    specs = paths.versions()["components"]
    if name not in specs:
        raise LabError(f"unknown component {name!r}", f"use one of: {', '.join(specs)}")
    return specs[name]


def component_offline_ref(name: str) -> str:
    offline = component_spec(name)["offline"]
    return f"{offline['name']}:{offline['tag']}"


def component_image(name: str, offline: bool | None = None) -> tuple[str, str]:
    """(image ref, how it was obtained). offline: True = the image built here, False = must
    pull, None = upstream if present or pullable, else the one built here (built if missing)."""
    upstream, own = component_spec(name)["upstream"], component_offline_ref(name)
    found = upstream_if_available(upstream, offline,
                                  "python -m msalab images build --offline   (builds the components here)")
    if found:
        return found
    why = "" if offline else f" ({upstream} cannot be pulled)"
    if image_present(own):
        return own, f"present{why}"
    from .cluster import gobuild

    if component_spec(name)["build"] != "envoy" and shutil.which("go") is None:
        raise LabError(f"no image for {name}{why}, and building {own} needs the Go toolchain",
                       f"install Go {gobuild.minimum_go()} or newer, then python -m msalab images build")
    try:
        build_component_image(name, offline)
    except LabError as error:
        raise LabError(f"no image for {name}{why}; building {own} failed:\n{error.problem}",
                       f"{error.fix}; then python -m msalab images build") from error
    return own, f"built{why}"


def build_component_binary(name: str) -> Path:
    """The component's static Go binary, built through the module proxy (cached by name-version)."""
    from .cluster import gobuild

    s = component_spec(name)
    flags = ("-tags", s["tags"]) if s.get("tags") else ()
    if s["build"] == "etcd":
        return gobuild.build_etcd(s["version"], nice=NICE) / "etcd"
    if s["build"] == "install":
        package = "/".join(filter(None, [s["module"], s.get("package")]))
        return gobuild.go_install(name, package, s["version"], flags, s.get("ldflags", ""), nice=NICE) / Path(package).name
    return gobuild.build_in_module(name, s["module"], s["version"], s["package"], flags, s.get("ldflags", ""),
                                   nice=NICE) / name


def component_executable(name: str) -> Path:
    """The binary the component's offline image runs: Envoy's from PyPI, the others built here."""
    if component_spec(name)["build"] == "envoy":
        from .cluster import addons

        return addons._envoy_binary(component_spec(name)["pypi"])
    return build_component_binary(name)


def build_component_image(name: str, offline: bool | None = None) -> str:
    """The offline image: Envoy is the cluster's image; the others one static binary FROM scratch."""
    if component_spec(name)["build"] == "envoy":
        from .cluster import addons

        return addons.build_envoy_image(base_image(True if offline else None)[0], paths.versions()["cluster"]["envoy"])
    ref, binary, target = component_offline_ref(name), build_component_binary(name), component_spec(name)["binary"]
    engine.build_small_image(ref, {binary.name: binary}, f"FROM scratch\nCOPY {binary.name} {target}\n"
                             f"USER {COMPONENT_USER}\nENTRYPOINT [\"{target}\"]\n")
    return ref


def build_component_images(offline: bool | None = None) -> list[str]:
    """Every component's image, one progress line each (see component_image for offline)."""
    engine.require_docker()
    refs, names = [], component_names()
    for number, name in enumerate(names, 1):
        with _step(number, len(names), f"component {name} {component_spec(name)['version']}") as outcome:
            ref, how = component_image(name, offline)
            outcome.append(f"{ref} {how}, {image_size_mb(ref):.0f} MB")
            refs.append(ref)
    return refs


# --- command line ------------------------------------------------------------------------

def list_images() -> int:
    running = docker_available()
    for role, ref, how in course_images():
        state = ("present" if image_present(ref) else "missing") if running else "unknown"
        print(f"{role:<22} {ref:<34} {state:<8} {how}")
    if not running:
        print(f"Docker is not running, so presence is unknown.\n  fix: {DOCKER_FIX}")
        return 1
    return 0


def main(action: str, offline: bool = False) -> int:
    try:
        if action == "list":
            return list_images()
        if action == "build":
            # Without --offline: pull the official base if possible, else fall back to Debian.
            build_shop_image(offline=True if offline else None)
            build_component_images(offline=True if offline else None)
            return 0
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"unknown action {action!r}; use list or build", file=sys.stderr)
    return 2
