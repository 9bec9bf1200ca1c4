"""The host's packet-filter rules around the offline cluster: remember them before `up`,
and on `down` remove exactly what the cluster added (and nothing else).

The kubelet, kube-proxy and the CNI plugins write iptables rules of their own (KUBE-* and
CNI-* chains, jumps to them from the built-in chains, in IPv4 and IPv6, in several tables),
and the course adds two FORWARD rules for its bridge. None of them is removed when those
processes stop. A blanket cleanup (`kube-proxy --cleanup`, deleting every CNI-* chain) would
also delete what another program made, and would miss the kubelet's own chains; so `up`
saves both families' complete rule sets first, and `down` takes away only the chains and
rules that are new since then and belong to the cluster.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FAMILIES = {"ipv4": ("iptables-save", "iptables-restore", "ip"), "ipv6": ("ip6tables-save", "ip6tables-restore", "ip6")}
COURSE_CHAINS = ("KUBE-", "CNI-")  # only Kubernetes components and CNI plugins name chains so
COUNTERS = re.compile(r"\[\d+:\d+\]")


@dataclass
class Table:
    chains: dict[str, str] = field(default_factory=dict)  # name -> policy ("-" for a user chain)
    rules: list[str] = field(default_factory=list)  # "-A CHAIN ..." lines, in order


def dump(family: str) -> str:
    """The complete rule set of one family, as its save command prints it ('' without iptables)."""
    save = FAMILIES[family][0]
    if shutil.which(save) is None:
        return ""
    return subprocess.run([save], capture_output=True, text=True).stdout


def _snapshot_of(family: str) -> str | None:
    """The family's rules for the snapshot, or None if its save command failed: "no rules"
    would make every KUBE-*/CNI-* rule already there look new, and `down` would delete it."""
    save = FAMILIES[family][0]
    if shutil.which(save) is None:
        return ""
    result = subprocess.run([save], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def parse(text: str) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), Table())
        elif current is not None and line.startswith(":"):
            name, policy = line[1:].split()[:2]
            current.chains[name] = policy
        elif current is not None and line.startswith("-A "):
            current.rules.append(line)
    return tables


def comparable(text: str) -> list[str]:
    """A dump without its comments and packet counters: equal when the rules are equal."""
    return [COUNTERS.sub("", line).rstrip() for line in text.splitlines() if line and not line.startswith("#")]


# -- before up -----------------------------------------------------------------------------------
def save_snapshot(path: Path) -> None:
    """Remember every table of both families (kept if there is one already: a second `up`
    of a half-started cluster must not forget what the machine had before the first)."""
    if path.exists():
        return
    partial = path.with_suffix(".partial")  # a snapshot is whole or absent, never cut short
    partial.write_text(json.dumps({family: _snapshot_of(family) for family in FAMILIES}))
    partial.rename(path)


# -- on down -------------------------------------------------------------------------------------
def is_course_rule(rule: str, course_markers: tuple[str, ...]) -> bool:
    chain = rule.split()[1]
    if chain.startswith(COURSE_CHAINS) or any(f"-j {prefix}" in rule or f"-g {prefix}" in rule
                                              for prefix in COURSE_CHAINS):
        return True
    return any(marker in rule for marker in course_markers)


def removal_script(before: Table | None, now: Table, course_markers: tuple[str, ...]) -> list[str]:
    """iptables-restore --noflush lines that take away the cluster's new rules and chains."""
    before = before or Table()
    new_chains = [c for c in now.chains if c not in before.chains and c.startswith(COURSE_CHAINS)]
    added = Counter(now.rules) - Counter(before.rules)
    lines = []
    for rule in now.rules:  # rules in chains that stay (e.g. FORWARD, PREROUTING) are deleted one by one
        if added[rule] and rule.split()[1] not in new_chains and is_course_rule(rule, course_markers):
            added[rule] -= 1
            lines.append("-D" + rule[2:])
    lines += [f"-F {chain}" for chain in new_chains]  # empty them first: they may jump to each other
    lines += [f"-X {chain}" for chain in new_chains]
    return lines


def _is_empty(table: Table) -> bool:
    return not table.rules and all(policy == "ACCEPT" for policy in table.chains.values())


def restore(snapshot_path: Path, course_markers: tuple[str, ...]) -> list[str]:
    """Remove what the cluster added since the snapshot. Returns what could not be removed."""
    if not snapshot_path.exists():
        return ["no snapshot of the rules from before `up`: iptables and ip6tables left as they are "
                "(compare iptables-save with what you expect; KUBE-*/CNI-* chains are the cluster's)"]
    before = json.loads(snapshot_path.read_text())
    problems = []
    for family, (_, restore_cmd, nft_family) in FAMILIES.items():
        if shutil.which(restore_cmd) is None:
            continue
        if before.get(family) is None:
            problems.append(f"{family}: its rules could not be saved before `up`, so they are left as they are")
            continue
        old, now = parse(before.get(family, "")), parse(dump(family))
        for name, table in now.items():
            lines = removal_script(old.get(name), table, course_markers)
            if lines:
                problems += _apply(restore_cmd, name, lines)
        problems += _drop_new_empty_tables(family, nft_family, old)
    return problems


def _apply(restore_cmd: str, table: str, lines: list[str]) -> list[str]:
    """All lines in one transaction; if that is refused, line by line, to remove what can be."""
    script = f"*{table}\n" + "\n".join(lines) + "\nCOMMIT\n"
    if subprocess.run([restore_cmd, "--noflush"], input=script, capture_output=True, text=True).returncode == 0:
        return []
    failed = []
    for line in lines:
        one = f"*{table}\n{line}\nCOMMIT\n"
        result = subprocess.run([restore_cmd, "--noflush"], input=one, capture_output=True, text=True)
        if result.returncode != 0:
            failed.append(f"{restore_cmd} -t {table} {line}: {result.stderr.strip()[-200:]}")
    return failed


def _drop_new_empty_tables(family: str, nft_family: str, old: dict[str, Table]) -> list[str]:
    """The kubelet's first rule in a table (e.g. ip6 mangle) creates that table. Once its
    chains are gone the table is empty but still listed; delete it if it was not there before.
    With the nf_tables backend (Debian's default) that is `nft delete table`; the legacy
    backend's tables cannot be deleted, and an empty one changes nothing."""
    if shutil.which("nft") is None:
        return []
    problems = []
    for name, table in parse(dump(family)).items():
        if name not in old and _is_empty(table):
            result = subprocess.run(["nft", "delete", "table", nft_family, name], capture_output=True, text=True)
            if result.returncode != 0:
                problems.append(f"nft delete table {nft_family} {name}: {result.stderr.strip()[-200:]}")
    return problems
