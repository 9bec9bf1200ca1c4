"""A small log shipper for Lab II.4: it tails the log files of a deployment's services and
pushes new lines to Loki's push API twice a second, labelled with service and deployment.

On a real host an agent does this job (Grafana Alloy, Fluent Bit, Vector; Promtail reached
its end of life in 2026). This one is 60 lines so that the lab can show every step: read,
label, batch, push.
"""

from __future__ import annotations

import json
import threading
import time

import httpx

from . import components


class LogShipper:
    def __init__(self, deployment, every_s: float = 0.5) -> None:
        self.loki = components.require("loki").url
        self.deployment = deployment
        self.every_s = every_s
        self.shipped = 0
        # Start at the end of each file: ship what is written from now on (like tail -F).
        self._offsets = {p.name: p.log_path.stat().st_size if p.log_path.exists() else 0
                         for p in deployment.procs.values()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)

    def start(self) -> "LogShipper":
        self._thread.start()
        return self

    def stop(self) -> int:
        """Ship what is left, stop, and return how many lines were shipped in all."""
        self._stop.set()
        self._thread.join(10)
        return self.shipped

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._ship_once()
        self._ship_once()

    def _ship_once(self) -> None:
        streams = []
        for proc in list(self.deployment.procs.values()):
            lines = self._new_lines(proc)
            if lines:
                labels = {"deployment": self.deployment.name, "service": proc.service, "instance": proc.name}
                streams.append({"stream": labels, "values": [[_timestamp_ns(line), line] for line in lines]})
        if streams:
            answer = httpx.post(f"{self.loki}/loki/api/v1/push", json={"streams": streams}, timeout=10)
            answer.raise_for_status()
            self.shipped += sum(len(s["values"]) for s in streams)

    def _new_lines(self, proc) -> list[str]:
        if not proc.log_path.exists():
            return []
        offset = self._offsets.get(proc.name, 0)
        with open(proc.log_path, "rb") as log:
            log.seek(offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits for the next round
        self._offsets[proc.name] = offset + len(complete)
        return [line for line in complete.decode(errors="replace").splitlines() if line.startswith("{")]


def _timestamp_ns(line: str) -> str:
    """The line's own time (the service's `ts`), in nanoseconds as Loki wants it."""
    try:
        return str(int(json.loads(line)["ts"] * 1e9))
    except (ValueError, KeyError):
        return str(time.time_ns())
