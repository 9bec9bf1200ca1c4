"""Command line: python -m msalab doctor | shop status | shop stop | clean | images ..."""

from __future__ import annotations

import argparse
import shutil
import sys

from . import doctor, paths, procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msalab")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check this machine and say how to fix each problem")
    shop = sub.add_parser("shop", help="the shop processes labs started")
    shop.add_argument("action", choices=["status", "stop"])
    sub.add_parser("clean", help="stop everything the course started and remove its files outside the repo")
    images = sub.add_parser("images", help="the course's container images")
    images.add_argument("action", choices=["list", "build"])
    images.add_argument("--offline", action="store_true", help="build the base from Debian packages (no image pull)")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        return doctor.run()
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
        stopped = procs.stop_all()
        shutil.rmtree(paths.state_dir() / "data", ignore_errors=True)
        shutil.rmtree(paths.run_dir(), ignore_errors=True)
        print(f"stopped {len(stopped)} process(es); removed lab data under {paths.state_dir()}")
        return 0
    if args.command == "images":
        from . import images as image_tools

        return image_tools.main(args.action, offline=args.offline)
    return 2


if __name__ == "__main__":
    sys.exit(main())
