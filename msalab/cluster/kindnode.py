"""The course's own kind node image, for machines where kind's published one cannot be pulled.

`kind build node-image` fetches the images kubeadm needs from registries, so it cannot run
here. This does its work from package registries instead:
- the base: Debian (debootstrap) with systemd, iptables and the CNI plugins, like kind's;
- containerd 2 and runc, and kubeadm, kubelet and kubectl, built from the Go module proxy
  (the offline cluster's builds, shared);
- the images kubeadm runs (control plane, etcd, kube-proxy, pause), built here and put in
  the node as one archive, imported into the node's containerd at its first boot;
- the course's files (cluster/kind/node): entrypoint, systemd units, containerd's
  configuration, and a static CNI configuration in place of kindnetd.
The image is cached in Docker under a tag that hashes all of that, so a change rebuilds it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

from .. import engine, images, paths
from ..errors import LabError
from . import gobuild

FILES = paths.REPO / "cluster" / "kind" / "node"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def spec() -> dict:
    return paths.versions()["cluster"]["kind"]["course_node"]


def _cluster() -> dict:
    return paths.versions()["cluster"]


def preloaded_images() -> dict[str, str]:
    """What kubeadm runs, by the names it asks for (kubeadm config images list), per binary."""
    version = _cluster()["kubernetes"]["version"]
    refs = {name: f"registry.k8s.io/{name}:{version}" for name in (*CONTROL_PLANE, "kube-proxy")}
    refs["etcd"] = f"registry.k8s.io/etcd:{spec()['etcd'].lstrip('v')}-0"
    refs["pause"] = _cluster()["pause"]["image"]
    return refs


def _inputs_key() -> str:
    """A hash of everything the image is made of: a changed file or version makes a new tag."""
    digest = hashlib.sha256(repr((spec(), _cluster()["kubernetes"]["version"], _cluster()["containerd"],
                                  _cluster()["runc"], _cluster()["pause"])).encode())
    digest.update(Path(__file__).read_bytes())  # how they are put together (the Dockerfile is here)
    for path in sorted(FILES.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(FILES)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def image_ref() -> str:
    return f"{spec()['name']}:{_cluster()['kubernetes']['version']}-{_inputs_key()}"


def _fill(text: str) -> str:
    from . import offline

    return offline.fill(text, {"pause_image": _cluster()["pause"]["image"], "pod_subnet": spec()["pod_subnet"]})


def build_binaries() -> dict[str, Path]:
    """The node's programs, from the Go module proxy (shared with the offline cluster's builds)."""
    c = _cluster()
    k8s = c["kubernetes"]
    gobuild.require_go(other_way="")
    return {"kubernetes": gobuild.build_kubernetes(k8s["version"], k8s["staging_version"], k8s["commands"]),
            "etcd": gobuild.build_etcd(spec()["etcd"]),
            "containerd": gobuild.build_containerd(c["containerd"]["version"]),
            "runc": gobuild.build_runc(c["runc"]["version"]),
            "pause": gobuild.build_local("pause", paths.REPO / "cluster" / "images" / "pause", "1")}


def _base_image() -> str:
    """Debian with the node's packages, imported into Docker (debootstrap, cached)."""
    s = spec()
    rootfs = images.debootstrap(s["suite"], s["packages"])
    ref = f"{s['name']}-base:{rootfs.name}"
    if not engine.image_present(ref):
        print(f"  node base {ref}: importing {rootfs}", flush=True)
        images.import_rootfs(rootfs, ref, '["/sbin/init"]')
    return ref


def _build_preloaded_images(bins: dict[str, Path], base: str) -> list[str]:
    """The images kubeadm runs, as upstream lays them out: the binary in /usr/local/bin, run by
    name. They run as root, as upstream's do: kubeadm's static pods read root-only files
    (certificates in /etc/kubernetes/pki, etcd's data in /var/lib/etcd)."""
    refs = preloaded_images()
    k8s = bins["kubernetes"]
    for name in CONTROL_PLANE:
        engine.build_small_image(refs[name], {name: k8s / name},
                                 f"FROM scratch\nCOPY {name} /usr/local/bin/{name}\nENV PATH=/usr/local/bin\n")
    engine.build_small_image(refs["etcd"], {"etcd": bins["etcd"] / "etcd"},
                             "FROM scratch\nCOPY etcd /usr/local/bin/etcd\nENV PATH=/usr/local/bin\n")
    # kube-proxy programs iptables through its binaries: on the node's Debian base, which has them.
    engine.build_small_image(refs["kube-proxy"], {"kube-proxy": k8s / "kube-proxy"},
                             f"FROM {base}\nCOPY kube-proxy /usr/local/bin/kube-proxy\n")
    from . import offline

    offline.build_pod_image(refs["pause"], bins["pause"] / "pause", "/pause")  # the offline cluster's, shared
    return list(refs.values())


def build() -> str:
    """The node image (cached by its inputs): about a minute the first time once the Go
    builds are done (68 s measured, the Debian base included); instant afterwards."""
    ref = image_ref()
    if engine.image_present(ref):
        return ref
    started = time.monotonic()
    print(f"[kind] building the course's node image {ref}", flush=True)
    bins = build_binaries()
    base = _base_image()
    preloaded = _build_preloaded_images(bins, base)
    context = paths.cache_dir() / "image-context" / "kind-node"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(FILES, context / "files", symlinks=True)
    for template in ("etc/containerd/config.toml", "etc/cni/net.d/10-msalab.conflist"):
        target = context / "files" / template
        target.write_text(_fill(target.read_text()))
    (context / "files" / "kind" / "version").write_text(_cluster()["kubernetes"]["version"] + "\n")
    (context / "files" / "kind" / "images").mkdir()
    save_images(preloaded, context / "files" / "kind" / "images" / "preloaded.tar")
    (context / "bin").mkdir()
    for binary in (bins["containerd"] / "containerd", bins["containerd"] / "containerd-shim-runc-v2",
                   bins["containerd"] / "ctr", bins["runc"] / "runc"):
        shutil.copy2(binary, context / "bin" / binary.name)
    (context / "kube").mkdir()
    for name in ("kubeadm", "kubelet", "kubectl"):
        shutil.copy2(bins["kubernetes"] / name, context / "kube" / name)
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    engine.build(context, ref, f"remove {context} and rerun python -m msalab cluster up --provider kind")
    shutil.rmtree(context, ignore_errors=True)
    _remove_older_tags(ref)
    elapsed = time.monotonic() - started
    _timing_record().write_text(f"{ref} built in {elapsed:.0f} s\n")  # for make bench-cluster
    print(f"[kind] node image {ref} built in {elapsed:.0f} s", flush=True)
    return ref


def _remove_older_tags(current: str) -> None:
    """A node image is about 1 GB: the one a changed input replaced goes."""
    name = spec()["name"]
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", name],
                            capture_output=True, text=True).stdout.split()
    for ref in listed:
        if ref != current:
            subprocess.run(["docker", "rmi", ref], capture_output=True)


def _timing_record() -> Path:
    return paths.cache_dir() / "kind-node-built.txt"


def recorded_build_seconds() -> float:
    """How long the node image took to assemble once its Go builds were done; NaN if unknown."""
    words = _timing_record().read_text().split() if _timing_record().exists() else []
    return float(words[3]) if len(words) > 3 and words[3].isdigit() else float("nan")


# systemd runs as PID 1 (kind's nodes are whole machines); `container` tells it it is in one,
# and SIGRTMIN+3 is its signal to shut down cleanly (what `kind delete` sends through stop).
DOCKERFILE = """FROM {base}
COPY files/ /
COPY bin/ /usr/local/bin/
COPY kube/ /usr/bin/
RUN systemctl enable containerd.service msalab-images.service kubelet.service \\
 && systemctl mask getty@tty1.service systemd-udevd.service systemd-udev-trigger.service \\
      systemd-modules-load.service systemd-networkd-wait-online.service \\
 && chmod 0755 /usr/local/bin/entrypoint
ENV container=oci
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
"""


def save_images(refs: list[str], target: Path) -> None:
    """docker save of several images into one archive: shared layers are stored once
    (also what kind.load_images hands to `kind load image-archive`)."""
    result = subprocess.run(["docker", "save", "-o", str(target), *refs], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"docker save of {', '.join(refs)} failed: {result.stderr.strip()[-300:]}",
                       "docker images (each must be listed); then run again")
