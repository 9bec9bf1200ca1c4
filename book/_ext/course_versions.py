"""Sphinx extension: the version numbers the book prints come from versions.yaml.

Pages write {{ kubernetes }} (or {{ kubernetes_minor }}) and the MyST substitution extension
fills in the pinned value at build time, so the text and the pins cannot drift apart.
tests/test_book_versions.py checks the numbers the book still writes by hand.
"""

from __future__ import annotations

from pathlib import Path

import yaml

VERSIONS = Path(__file__).resolve().parents[2] / "versions.yaml"


def substitutions(pins: dict) -> dict[str, str]:
    """Name -> version as the book prints it (no leading v; *_minor is MAJOR.MINOR)."""
    cluster = pins["cluster"]
    found = {
        "kubernetes": cluster["kubernetes"]["version"],
        "containerd": cluster["containerd"]["version"],
        "runc": cluster["runc"]["version"],
        "etcd": cluster["etcd"]["version"],
        "coredns": cluster["coredns"]["version"],
        "metrics_server": cluster["metrics-server"]["version"],
        "contour": cluster["contour"]["version"],
        "gateway_api": cluster["gateway-api"]["version"],
        "envoy_gateway": cluster["envoy-gateway"]["version"],
        "helm": cluster["helm"]["version"],
        "envoy": cluster["envoy"]["pypi"].split("==")[1],
        "kind": cluster["kind"]["version"],
        "kind_node": cluster["kind"]["node_image"].split(":")[1].split("@")[0],
        # kind where nothing can be pulled: the course's node image runs kubeadm's etcd, and
        # kind's nerdctl provider runs on a containerd 1.7 of the course's own.
        "kind_node_etcd": cluster["kind"]["course_node"]["etcd"],
        "nerdctl": cluster["kind"]["nerdctl"]["version"],
        "nerdctl_containerd": cluster["kind"]["nerdctl"]["containerd"],
        # classroom workshops (msalab.workshop)
        "jupyterhub": pins["workshop"]["jupyterhub"],
        "kubespawner": pins["workshop"]["kubespawner"],
        "idle_culler": pins["workshop"]["idle_culler"],
        "configurable_http_proxy": pins["workshop"]["configurable_http_proxy"],
        "kube_network_policies": pins["workshop"]["network_policies"]["version"],
        "kube_router": pins["workshop"]["network_policies"]["fallback"]["version"],
        "workshop_server_memory_limit": pins["workshop"]["server"]["memory_limit"].replace("Gi", " GiB"),
        "workshop_home_size": pins["workshop"]["home_size"].replace("Gi", " GiB"),
        "istio": pins["mesh"]["istio"]["release"],
        "istio_offline": pins["mesh"]["istio"]["offline_tag"],
        "python": pins["python"],
        "go": pins["go"],
    }
    found = {name: version.lstrip("v") for name, version in found.items()}
    found.update(_workshop_reserve(pins["workshop"]))
    for name in ("kubernetes", "containerd", "gateway_api", "kind_node", "istio", "nerdctl_containerd"):
        found[f"{name}_minor"] = ".".join(found[name].split(".")[:2])
    return found


def _workshop_reserve(workshop: dict) -> dict[str, str]:
    """What a workshop reserves per student (msalab.workshop.deploy.per_student): server + one lab,
    a Part III lab's, or with the mesh the larger of that and a Part IV lab's."""
    server, lab, mesh_lab = workshop["server"], workshop["lab_pods"], workshop["mesh_lab_pods"]

    def cpu(pods):
        return int(pods["cpu_request"].rstrip("m"))

    def memory(pods):
        return int(pods["memory_request"].removesuffix("Mi"))
    return {"workshop_cpu_per_student": f"{cpu(server) + cpu(lab)}m",
            "workshop_memory_per_student": f"{memory(server) + memory(lab)} MiB",
            "workshop_cpu_per_student_meshed": f"{cpu(server) + max(cpu(lab), cpu(mesh_lab))}m",
            "workshop_memory_per_student_meshed": f"{memory(server) + max(memory(lab), memory(mesh_lab))} MiB"}


def _add_substitutions(app, config) -> None:
    pins = yaml.safe_load(VERSIONS.read_text())
    config.myst_substitutions = {**substitutions(pins), **(config.myst_substitutions or {})}


def setup(app):
    app.connect("config-inited", _add_substitutions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
