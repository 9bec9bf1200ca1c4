"""Build cluster components from the Go module proxy, cached by component and version.

Each build lives in cache_dir()/go/NAME-VERSION/ (bin/ plus the small wrapper module that
made it); a `complete` marker is written last, so an interrupted build is redone, never used.
A build holds a lock (NAME-VERSION.lock) while it runs: `make test` starts every build in the
background (msalab.prebuild), and a step that needs one of them waits for it instead of
building it a second time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil

from .. import paths
from ..errors import LabError

def build_root(name: str, version: str) -> Path:
    return paths.cache_dir() / "go" / f"{name}-{version}"


def is_built(name: str, version: str) -> bool:
    return (build_root(name, version) / "complete").exists()


_held: set[str] = set()  # locks this process holds (a build may call another build of the same name)


@contextlib.contextmanager
def building(name: str, version: str):
    """Hold NAME-VERSION's build lock; wait, saying so, while another process holds it."""
    key = f"{name}-{version}"
    if key in _held:
        yield
        return
    lock_path = paths.cache_dir() / "go" / f"{key}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"  {name} {version}: another process is building it (make test's background build logs to "
                  ".prebuild.log); waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)


def _once(name: str, version: str, build) -> Path:
    """NAME-VERSION's bin/: cached, or made by build() while holding its build lock."""
    with building(name, version):
        if is_built(name, version):
            return build_root(name, version) / "bin"
        return build()


def minimum_go() -> str:
    """The oldest Go that builds every pinned component (the newest `go` line of their go.mod)."""
    return paths.versions()["go"]


def require_go(other_way: str = ", or use --provider kind") -> None:
    """Say so before a long build fails halfway on a toolchain that is too old. other_way ends
    the fix: the kind provider needs Go too (for its add-ons), so it passes ""."""
    result = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, env=_go_env(other_way))
    have = result.stdout.strip().removeprefix("go")

    def numbers(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("rc")[0].split("beta")[0].split(".") if part.isdigit())

    if numbers(have) < numbers(minimum_go()):
        raise LabError(f"Go {have} is too old: the pinned cluster components need Go {minimum_go()} or newer",
                       f"install Go {minimum_go()} or newer (https://go.dev/dl/){other_way}")


NO_DWARF = "-gcflags=all=-dwarf=false"


def _go_env(other_way: str = ", or use --provider kind", **extra: str) -> dict:
    if shutil.which("go") is None:
        raise LabError("the Go toolchain is not installed (the course builds its components from the Go module proxy)",
                       f"install Go {minimum_go()} or newer (go.dev or your package manager){other_way}")
    # Static binaries (they go into FROM-scratch images); never download another toolchain.
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", **extra}
    # No DWARF: every binary is linked with -w (stripped) anyway, so the compiler need not make it.
    # A compiler that collects garbage less often is faster too: together 12% less time
    # (metrics-server from an empty build cache, 132.5 -> 116.6 s). Where memory is short (a
    # 4 GiB learner machine) Go's default stays.
    env["GOFLAGS"] = f"{env['GOFLAGS']} {NO_DWARF}".strip()
    available = psutil.virtual_memory().available
    if "GOGC" not in os.environ and available > 8 * 2**30:
        # The soft limit brings the default pace back before one compiler or linker (a build
        # runs two, and make test's background build may run beside a foreground one) holds
        # more than a sixth of what was free.
        env["GOGC"], env["GOMEMLIMIT"] = "400", f"{available // 6 // 2**20}MiB"
    return {k: v for k, v in env.items() if v != ""}


def _run_go(args: list[str], cwd: Path, label: str, total_packages: int = 0, nice: int = 0, **extra_env: str) -> None:
    """Run a go command, its output in a log; with `-v`, count compiled packages for progress.
    nice > 0 runs it at lower priority (`nice -n N`), so a build leaves the machine usable."""
    started = time.monotonic()
    log_path = paths.cache_dir() / "go" / "logs" / f"{label}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        command = (["nice", "-n", str(nice)] if nice and shutil.which("nice") else []) + ["go", *args]
        proc = subprocess.Popen(command, cwd=cwd, env=_go_env(**extra_env), stdout=log,
                                stderr=subprocess.PIPE, text=True)
        done, last = 0, 0.0
        for line in proc.stderr:
            log.write(line)
            done += 1
            if total_packages and time.monotonic() - last > 20:
                last = time.monotonic()
                print(f"    {label}: {min(done, total_packages)}/{total_packages} packages, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
        failed = proc.wait() != 0
    if failed:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise LabError(f"building {label} failed; the end of {log_path}:\n{tail}",
                       "fix what the log says (often: the Go module proxy cannot be reached), then run again")


def _write_module(root: Path, module: str, go_mod_body: str, main_go: str | None = None) -> Path:
    src = root / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    (src / "go.mod").write_text(f"module {module}\n\ngo 1.24.0\n\n{go_mod_body}")
    if main_go:
        (src / "main.go").write_text(main_go)
    return src


def _finish(name: str, version: str, started: float) -> Path:
    root = build_root(name, version)
    (root / "complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")  # read by bench.cluster
    print(f"  {name} {version}: built in {time.monotonic() - started:.0f} s", flush=True)
    return root / "bin"


def build_kubernetes(version: str, staging_version: str, commands: list[str]) -> Path:
    """All Kubernetes commands in one `go build`, so shared packages compile once.

    k8s.io/kubernetes cannot be `go install`ed: its go.mod points its staging modules at
    local folders. A wrapper module requires it and maps each staging module to its
    published v0.x release, the pattern Kubernetes' own reference-docs use."""
    def missing() -> list[str]:
        return [c for c in commands if not (build_root("kubernetes", version) / "bin" / c).exists()]

    with building("kubernetes", version):
        # A cache made before a command joined the list (kubeadm, for kind's node image) lacks
        # it: the build is redone, and Go's build cache makes that mostly linking.
        if missing():
            (build_root("kubernetes", version) / "complete").unlink(missing_ok=True)
        return _once("kubernetes", version, lambda: _build_kubernetes(version, staging_version, commands))


def _build_kubernetes(version: str, staging_version: str, commands: list[str]) -> Path:
    name = "kubernetes"
    started, root = time.monotonic(), build_root(name, version)
    staging, godebug = _kubernetes_staging(version)
    replaces = "\n".join(f"\tk8s.io/{m} => k8s.io/{m} {staging_version}" for m in staging)
    # godebug: the kubernetes module's own settings, ignored when it is a dependency.
    src = _write_module(root, "msalab.local/kubernetes-build",
                        f"{godebug}\n\nrequire k8s.io/kubernetes {version}\n\nreplace (\n{replaces}\n)\n")
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        # Without these the version reads v0.0.0-master and version-skew checks fail.
        ldflags += [f"-X {pkg}.{k}={v}" for k, v in (("gitVersion", version), ("gitMajor", major),
                                                      ("gitMinor", minor), ("gitTreeState", "clean"),
                                                      ("buildDate", stamp))]
    print(f"  kubernetes {version}: downloading modules", flush=True)
    _run_go(["mod", "download", "k8s.io/kubernetes"], src, "kubernetes")
    targets = [f"k8s.io/kubernetes/cmd/{c}" for c in commands]
    deps = subprocess.run(["go", "list", "-deps", *targets], cwd=src, env=_go_env(), capture_output=True, text=True)
    total = len(deps.stdout.split())
    print(f"  kubernetes {version}: compiling {len(commands)} commands ({total} packages; "
          "about 25 minutes on 2 cores the first time)", flush=True)
    (root / "bin").mkdir(exist_ok=True)
    _run_go(["build", "-v", "-trimpath", "-tags", "selinux,notest", "-ldflags", " ".join(ldflags),
             "-o", str(root / "bin") + "/", *targets], src, "kubernetes", total)
    return _finish(name, version, started)


def _kubernetes_staging(version: str) -> tuple[list[str], str]:
    """The staging modules k8s.io/kubernetes `version` requires (minors add some: 1.36 added
    streaming and cri-streaming), and its godebug line, read from its own go.mod."""
    go_mod_path = _module_info("k8s.io/kubernetes", version)["GoMod"]
    go_mod = json.loads(subprocess.run(["go", "mod", "edit", "-json", go_mod_path],
                                       capture_output=True, text=True, check=True, env=_go_env()).stdout)
    required = {r["Path"] for r in go_mod.get("Require") or []}
    # Only the required ones: a replace names a version the proxy must then serve, and some
    # staging modules (sample-cli-plugin) are replaced but never required, and not served.
    staging = sorted(r["Old"]["Path"].removeprefix("k8s.io/") for r in go_mod.get("Replace") or []
                     if r["New"]["Path"].startswith("./staging/") and r["Old"]["Path"] in required)
    godebug = "\n".join(f"godebug {d['Key']}={d['Value']}" for d in go_mod.get("GoDebug") or [])
    return staging, godebug


def build_etcd(version: str, nice: int = 0) -> Path:
    """etcd's server module also carries local replaces; as a dependency they are ignored,
    so a wrapper with a three-line main (what etcd's own main.go does) builds it."""
    return _once("etcd", version, lambda: _build_etcd(version, nice))


def _build_etcd(version: str, nice: int) -> Path:
    name = "etcd"
    started, root = time.monotonic(), build_root(name, version)
    main_go = ('package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
               "func main() { etcdmain.Main(os.Args) }\n")
    src = _write_module(root, "msalab.local/etcd-build", f"require go.etcd.io/etcd/server/v3 {version}\n", main_go)
    print(f"  etcd {version}: compiling", flush=True)
    _run_go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(root / "bin" / "etcd"), "."], src, "etcd", nice=nice)
    return _finish(name, version, started)


def _simple_build(name: str, version: str, args: list[str], cwd: Path | None = None, nice: int = 0,
                  **env: str) -> Path:
    """One `go` command whose output goes to bin/, cached like the others."""
    def build() -> Path:
        started, root = time.monotonic(), build_root(name, version)
        (root / "bin").mkdir(parents=True, exist_ok=True)
        print(f"  {name} {version}: compiling", flush=True)
        _run_go(args, cwd or root, name, nice=nice, **env)
        return _finish(name, version, started)

    return _once(name, version, build)


def go_install(name: str, package: str, version: str, flags: tuple[str, ...] = (), ldflags: str = "",
               nice: int = 0) -> Path:
    """Modules without replace directives install straight from the proxy.
    (`go install pkg@version` refuses -mod flags: GOFLAGS is cleared for it.)"""
    bin_dir = build_root(name, version) / "bin"
    args = ["install", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip(), *flags, f"{package}@{version}"]
    return _simple_build(name, version, args, nice=nice, GOBIN=str(bin_dir), GOFLAGS="")


def build_containerd(version: str) -> Path:
    """containerd, its runc shim and ctr: one `go install` of three commands of one module.
    Static (no cgo): the btrfs and other cgo-only snapshotters are left out; overlayfs is in."""
    module = "github.com/containerd/containerd/v2"
    packages = [f"{module}/cmd/{c}@{version}" for c in ("containerd", "containerd-shim-runc-v2", "ctr")]
    bin_dir = build_root("containerd", version) / "bin"
    args = ["install", "-trimpath", "-ldflags", f"-s -w -X {module}/version.Version={version}", *packages]
    return _simple_build("containerd", version, args, GOBIN=str(bin_dir), GOFLAGS="")


def build_containerd_v1(version: str) -> Path:
    """containerd 1.7 (the runtime nerdctl 1.7 drives for kind's nodes): its go.mod has an
    `exclude`, which `go install` refuses, so it is built inside the module, as its Makefile does."""
    module = "github.com/containerd/containerd"
    packages = [f"./cmd/{c}" for c in ("containerd", "containerd-shim-runc-v2", "ctr")]

    def build() -> Path:
        root = build_root("containerd", version)
        (root / "bin").mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        print(f"  containerd {version}: compiling", flush=True)
        with module_copy(root, module, version) as src:
            _run_go(["build", "-trimpath", "-ldflags", f"-s -w -X {module}/version.Version={version}",
                     "-o", str(root / "bin") + "/", *packages], src, "containerd")
        return _finish("containerd", version, started)

    return _once("containerd", version, build)


def build_nerdctl(version: str) -> Path:
    """nerdctl, through a wrapper module: the proxy here refuses its version list, which
    `go install nerdctl@VERSION` reads."""
    def build() -> Path:
        root, started = build_root("nerdctl", version), time.monotonic()
        src = _write_module(root, "msalab.local/nerdctl-build", f"require github.com/containerd/nerdctl {version}\n")
        (root / "bin").mkdir(parents=True, exist_ok=True)
        print(f"  nerdctl {version}: compiling", flush=True)
        package = "github.com/containerd/nerdctl/cmd/nerdctl"
        _run_go(["mod", "download", "github.com/containerd/nerdctl"], src, "nerdctl")
        _run_go(["build", "-trimpath", "-ldflags", f"-s -w -X github.com/containerd/nerdctl/pkg/version.Version={version}",
                 "-o", str(root / "bin" / "nerdctl"), package], src, "nerdctl")
        return _finish("nerdctl", version, started)

    return _once("nerdctl", version, build)


def build_runc(version: str) -> Path:
    """runc with seccomp, as its Makefile builds it: that needs cgo and libseccomp (the only
    component linked dynamically; it runs on the host, never in an image)."""
    bin_dir = build_root("runc", version) / "bin"
    args = ["install", "-trimpath", "-tags", "seccomp urfave_cli_no_docs",
            "-ldflags", f"-s -w -X main.version={version.lstrip('v')}", f"github.com/opencontainers/runc@{version}"]
    return _simple_build("runc", version, args, GOBIN=str(bin_dir), GOFLAGS="", CGO_ENABLED="1")


def _module_info(module: str, version: str) -> dict:
    """`go mod download -json` of the module: where its files (Dir) and go.mod (GoMod) are in
    the Go module cache (read-only), fetched from the Go module proxy if needed."""
    result = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True,
                            env=_go_env(GOFLAGS=""))
    if result.returncode != 0:
        raise LabError(f"cannot download {module}@{version}: {(result.stdout + result.stderr).strip()[-300:]}",
                       "check that the Go module proxy is reachable (go env GOPROXY)")
    return json.loads(result.stdout)


def download_module(module: str, version: str) -> Path:
    """The module's files in the Go module cache (read-only), from the Go module proxy."""
    return Path(_module_info(module, version)["Dir"])


def build_in_module(name: str, module: str, version: str, package: str, flags: tuple[str, ...] = (),
                    ldflags: str = "", nice: int = 0) -> Path:
    """Modules whose go.mod has replace directives (go install refuses them): build inside a
    writable copy of the downloaded module, so its own replaces apply, as its Makefile does."""
    return _once(name, version, lambda: _build_in_module(name, module, version, package, flags, ldflags, nice))


def _build_in_module(name: str, module: str, version: str, package: str, flags: tuple[str, ...], ldflags: str,
                     nice: int) -> Path:
    root = build_root(name, version)
    with module_copy(root, module, version) as src:  # go may update go.sum
        _drop_missing_local_replaces(src)
        out = root / "bin" / name
        args = ["build", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip(), *flags, "-o", str(out), f"./{package}"]
        return _simple_build(name, version, args, src, nice=nice)


def build_patched_module(name: str, module: str, version: str, build_tag: str, patches: list[Path],
                         flags: list[str], packages: list[str]) -> Path:
    """Commands of a module built in a writable copy with fixes applied (git apply, in order),
    cached under VERSION-BUILD_TAG: the tag names the fixes, so a changed fix builds again.
    (go refuses -overlay for files in the module cache, and `go install pkg@version` any edit.)"""
    key = f"{version}-{build_tag}"

    def build() -> Path:
        if patches and shutil.which("git") is None:
            raise LabError(f"git is not installed: the build of {name} applies the course's fixes with git apply",
                           "apt-get install git (or your package manager's git)")
        root = build_root(name, key)
        with module_copy(root, module, version) as src:
            for patch in patches:
                # Outside any repository (the ceiling), git apply patches the folder as patch(1) would.
                applied = subprocess.run(["git", "apply", "--verbose", str(patch)], cwd=src, capture_output=True,
                                         text=True, env={**os.environ, "GIT_CEILING_DIRECTORIES": str(src.parent)})
                if applied.returncode != 0:
                    raise LabError(f"{patch.name} does not apply to {module}@{version}: {applied.stderr.strip()[-300:]}",
                                   "update the patch for this version, or remove it from versions.yaml")
            (root / "bin").mkdir(parents=True, exist_ok=True)
            args = ["build", "-trimpath", *flags, "-o", str(root / "bin") + "/", *[f"./{p}" for p in packages]]
            return _simple_build(name, key, args, src)

    return _once(name, key, build)


@contextlib.contextmanager
def module_copy(root: Path, module: str, version: str):
    """A writable copy of the downloaded module in ROOT/src for one build, removed afterwards,
    whether the build worked or not (the copy is only needed to build; Loki's is 100+ MB)."""
    src = root / "src"
    shutil.rmtree(src, ignore_errors=True)
    writable_copy(download_module(module, version), src)
    try:
        yield src
    finally:
        shutil.rmtree(src, ignore_errors=True)


def writable_copy(source: Path, target: Path) -> Path:
    """A copy of a folder of the Go module cache (whose files are read-only) that can be written to."""
    shutil.copytree(source, target)
    for folder, _, files in os.walk(target):
        os.chmod(folder, 0o755)
        for file in files:
            os.chmod(os.path.join(folder, file), 0o644)
    return target


def _drop_missing_local_replaces(src: Path) -> None:
    """A replace to a folder that is a module of its own (Loki's ./pkg/push) has no files in the
    downloaded module: use the version its go.mod requires from the proxy, as a dependent would."""
    mod = json.loads(subprocess.run(["go", "mod", "edit", "-json"], cwd=src, env=_go_env(), capture_output=True,
                                    text=True, check=True).stdout)
    for replace in mod.get("Replace") or []:
        target = replace["New"]["Path"]
        if target.startswith(".") and not (src / target).is_dir():
            subprocess.run(["go", "mod", "edit", f"-dropreplace={replace['Old']['Path']}"], cwd=src, env=_go_env(),
                           check=True)


def build_local(name: str, source: Path, version: str, nice: int = 0) -> Path:
    """A small program of the course's own (the pause binary)."""
    out = build_root(name, version) / "bin" / name
    return _simple_build(name, version, ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."], source,
                         nice=nice)
