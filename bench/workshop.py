"""The workshop's capacity (make bench, with the course cluster up; or python -m bench.workshop).

A workshop of STUDENTS students on the course cluster, each logged in through the hub's form,
their server started, and a Part III lab running in their namespace (Lab III.1's first steps
and the whole shop, as Labs III.2-7 deploy it). Measured per student: the time from login to a
ready server, memory (cAdvisor's working set of every pod in their namespace), CPU (metrics-
server, the server and the shop idle after the lab), the disk of their home; and the hub's.
From those: how many students fit in 2 CPUs and 4 GiB, and what 30 need.
"""

from __future__ import annotations

import statistics
import sys
import time

from bench import print_table
from msalab import k8s, paths
from msalab.workshop import client, deploy

STUDENTS = ("bench-a", "bench-b", "bench-c")
PASSWORD = "bench-room-password"
TARGET = {"cpu_m": 2000, "memory_mi": 4096}  # the machine the issue asks about
PROJECT_TO = 30
LAB = ("from msalab import k8s\ncluster = k8s.Cluster()\nnamespace = cluster.fresh_namespace('lab-pods')\n"
       "cluster.deploy_shop(namespace)\nprint('shop ready in', namespace)")


def measure(cluster: k8s.Cluster) -> dict:
    info = deploy.up(students=len(STUDENTS), password=PASSWORD)
    try:
        students, ready_s = {}, {}
        for name in STUDENTS:
            student = client.Student(info["url"], name, PASSWORD)
            started = time.monotonic()
            student.log_in()
            student.start_server()
            ready_s[name] = time.monotonic() - started
            students[name] = student
        for name, student in students.items():
            printed, error = student.run(LAB)
            if error:
                raise SystemExit(f"the lab failed in {name}'s server: {error}\n{printed}")
        time.sleep(30)  # the shop's start-up work done: what a room looks like between steps
        hub_ns = deploy.spec()["namespace"]
        hub_memory, hub_cpu = cluster.pod_memory_mib(hub_ns), cluster.resource_usage("pods", hub_ns)
        servers = {name: _server_pod(cluster, name) for name in STUDENTS}
        memory, cpu, home = {}, {}, {}
        for name in STUDENTS:  # each student: their server (in the hub's namespace) and their namespace's pods
            ns = deploy.spec()["student_namespace_prefix"] + name
            memory[name] = hub_memory[servers[name]] + sum(cluster.pod_memory_mib(ns).values())
            cpu[name] = hub_cpu[servers[name]][0] + sum(c for c, _ in cluster.resource_usage("pods", ns).values())
            home[name] = _home_mib(cluster, servers[name])
        hub = {"memory_mi": sum(v for pod, v in hub_memory.items() if pod not in servers.values()),
               "cpu_m": sum(c for pod, (c, _) in hub_cpu.items() if pod not in servers.values())}
        return {"ready_s": ready_s, "memory": memory, "cpu": cpu, "home": home, "hub": hub}
    finally:
        deploy.down()


def _server_pod(cluster: k8s.Cluster, student: str) -> str:
    return cluster.kubectl("get", "pods", "-n", deploy.spec()["namespace"], "-l", f"msalab.dev/student={student}",
                           "-o", "jsonpath={.items[0].metadata.name}")


def _home_mib(cluster: k8s.Cluster, pod: str) -> float:
    used = cluster.kubectl("exec", "-n", deploy.spec()["namespace"], pod, "--", "du", "-sk", "/home/student")
    return int(used.split()[0]) / 1024


def rows(found: dict) -> tuple[list[tuple], list[tuple]]:
    per = {"memory_mi": statistics.mean(found["memory"].values()), "cpu_m": statistics.mean(found["cpu"].values()),
           "home_mi": statistics.mean(found["home"].values())}
    ready = sorted(found["ready_s"].values())
    measured = [
        ("login to a ready server", f"{ready[0]:.1f} / {statistics.median(ready):.1f} / {ready[-1]:.1f} s (min / median / max)"),
        ("memory per student (server + the shop)", f"{per['memory_mi']:.0f} MiB"),
        ("CPU per student, idle after the lab", f"{per['cpu_m']:.0f}m"),
        ("disk per student (their home)", f"{per['home_mi']:.1f} MiB, plus the lab image once per node"),
        ("the hub (hub, proxy, culler, board, kubelet-metrics)", f"{found['hub']['memory_mi']:.0f} MiB, {found['hub']['cpu_m']:.0f}m CPU"),
    ]
    by_memory = int((TARGET["memory_mi"] - found["hub"]["memory_mi"]) // per["memory_mi"])
    need = deploy.per_student()
    by_requests = int((TARGET["cpu_m"] - deploy.HUB_NEEDS["cpu_m"]) // need["cpu_m"])
    fit = [
        ("students in 2 CPUs and 4 GiB, by measured memory", str(by_memory)),
        ("students in 2 CPUs, by what each reserves (requests)", f"{by_requests} ({need['cpu_m']}m each)"),
        (f"{PROJECT_TO} students need, memory in use", f"{(PROJECT_TO * per['memory_mi'] + found['hub']['memory_mi']) / 1024:.1f} GiB"),
        (f"{PROJECT_TO} students need, reserved", f"{PROJECT_TO * need['cpu_m'] / 1000:.1f} CPUs, "
                                                  f"{PROJECT_TO * need['memory_mi'] / 1024:.1f} GiB (requests)"),
    ]
    return measured, fit


# The instructors' guide includes this file: the figures of the last run, never typed by hand.
GUIDE_TABLE = paths.REPO / "book" / "appendix" / "workshop-capacity.md"


def write_guide_table(measured: list[tuple], fit: list[tuple]) -> None:
    lines = ["| measured with 3 students | |", "|---|---|", *(f"| {a} | {b} |" for a, b in measured + fit)]
    GUIDE_TABLE.write_text(f"<!-- written by make bench-workshop ({time.strftime('%Y-%m-%d')}); do not edit -->\n"
                           + "\n".join(lines) + "\n")


def main() -> int:
    cluster = k8s.Cluster()
    found = measure(cluster)
    measured, fit = rows(found)
    print_table(("workshop, 3 students with a lab running", "measured"), measured)
    print_table(("capacity", "students or need"), fit)
    write_guide_table(measured, fit)
    print(f"\nwritten to {GUIDE_TABLE.relative_to(paths.REPO)} (the instructors' guide includes it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
