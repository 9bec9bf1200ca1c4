"""The node's routing rules for the Service range (msalab/cluster/servicerange.py), added and
removed for real in a network namespace of the test's own (its rules start as a new node's)."""

from __future__ import annotations

import textwrap

from msalab.cluster import servicerange
from test_netfilter import needs_root_iptables, run_in_own_netns

LISTING = """0:\tfrom all lookup local
1080:\tfrom all to 10.96.0.0/16 iif lo lookup main
1081:\tfrom all to 10.96.0.0/16 prohibit
32766:\tfrom all lookup main
"""


def test_both_rules_are_needed_and_must_name_the_service_range():
    assert servicerange.in_place(LISTING, "10.96.0.0/16")
    assert not servicerange.in_place(LISTING.replace("prohibit", "lookup main"), "10.96.0.0/16")
    assert not servicerange.in_place(LISTING.replace("1080:", "1079:"), "10.96.0.0/16")  # the node's own traffic
    assert not servicerange.in_place(LISTING, "10.97.0.0/16")


def test_a_kind_nodes_boot_unit_adds_the_same_rules():
    unit = servicerange.boot_unit()
    assert f"ExecStart=/bin/sh -c '{servicerange.add_command()}'" in unit and "WantedBy=multi-user.target" in unit
    assert servicerange.boot_unit() in servicerange.install_on_node_command()


SCENARIO = textwrap.dedent("""
    import json, subprocess
    from msalab.cluster import servicerange
    from msalab.errors import LabError

    def listing():
        return subprocess.run(["ip", "rule", "show"], capture_output=True, text=True, check=True).stdout

    servicerange.apply_here()
    servicerange.apply_here()  # a second `up`
    added = listing()
    servicerange.remove_here()
    removed = listing()
    # Someone else's rule at one of the priorities: `up` refuses, `down` leaves it.
    subprocess.run(["ip", "rule", "add", "to", "198.51.100.0/24", "prohibit", "priority",
                    str(servicerange.FORWARDED)], check=True)
    try:
        servicerange.apply_here()
        refused = ""
    except LabError as err:
        refused = err.problem
    servicerange.remove_here()
    print(json.dumps({"added": added, "removed": removed, "refused": refused, "foreign_left": listing()}))
""")


@needs_root_iptables
def test_up_adds_the_rules_once_and_down_removes_only_them(tmp_path):
    outcome = run_in_own_netns(SCENARIO, tmp_path)
    assert servicerange.in_place(outcome["added"]), outcome["added"]
    assert outcome["added"].count("prohibit") == 1, outcome["added"]
    assert "10.96.0.0/16" not in outcome["removed"], outcome["removed"]
    assert "are not the cluster's" in outcome["refused"], outcome
    assert "198.51.100.0/24 prohibit" in outcome["foreign_left"] and "10.96.0.0/16" not in outcome["foreign_left"]
