"""Clients for the Part II components the labs talk to, each checked to be running first
(a LabError names the component and the command that starts it)."""

from __future__ import annotations

import sys

from . import components, paths


def etcd():
    """The shop's own etcd client (lab-services/shop/etcd.py) for the course's etcd: the
    same code the services use, so the lab and the services see the store alike."""
    component = components.require("etcd")
    if str(paths.LAB_SERVICES) not in sys.path:
        sys.path.insert(0, str(paths.LAB_SERVICES))
    from shop.etcd import Etcd

    return Etcd(component.url)
