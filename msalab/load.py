"""Steady request streams and latency measurements against the shop (loopback only)."""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import os

from tqdm.auto import tqdm

from .shop import Reply


def _quiet() -> bool:
    """Progress bars are for people; runs that store outputs (make labs, nbval) turn them off."""
    return bool(os.environ.get("MSALAB_NO_PROGRESS"))


@dataclass
class Sample:
    t: float  # seconds since the stream started
    ms: float
    status: int
    upstream: str
    error: str
    kind: str = "request"

    @property
    def answer_lost(self) -> bool:
        """No answer, although a connection was made: the process may have read the request and
        done its work (an order committed) before it died. A request that never got a connection
        (refused, timed out connecting, or no free connection in the client's pool) never got there."""
        return self.status == 0 and not self.error.startswith(("ConnectError", "ConnectTimeout", "PoolTimeout"))


class LoadResult:
    def __init__(self, samples: list[Sample], duration_s: float) -> None:
        self.samples = sorted(samples, key=lambda s: s.t)
        self.duration_s = duration_s

    @property
    def total(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> list[Sample]:
        return [s for s in self.samples if not 200 <= s.status < 300]

    @property
    def ok(self) -> int:
        return self.total - len(self.failed)

    def percentile(self, p: float) -> float:
        """Latency percentile (ms) of the successful requests."""
        times = sorted(s.ms for s in self.samples if 200 <= s.status < 300)
        if not times:
            return float("nan")
        return times[min(len(times) - 1, int(round(p / 100 * (len(times) - 1))))]

    def count_by(self, key: Callable[[Sample], str]) -> dict[str, int]:
        return dict(Counter(key(s) for s in self.samples))

    def summary(self) -> dict:
        return {"requests": self.total, "ok": self.ok, "failed": len(self.failed),
                "rate_per_s": round(self.total / self.duration_s, 1) if self.duration_s else 0,
                "p50_ms": round(self.percentile(50), 2), "p99_ms": round(self.percentile(99), 2)}


class Stream:
    """Sends requests at a steady rate from a few worker threads until stopped.

    `calls` is one function returning a Reply, or a dict {kind: function} taken in turn
    (e.g. {"browse": ..., "order": ...}). The schedule does not wait for slow answers (an
    open loop), so a slow or failing service shows up as latency and errors instead of as
    a silently lower rate.
    """

    def __init__(self, calls: Callable[[], Reply] | dict[str, Callable[[], Reply]], rate_per_s: float = 20,
                 workers: int = 16) -> None:
        self.calls = calls if isinstance(calls, dict) else {"request": calls}
        self.rate, self.workers = rate_per_s, workers
        self._ticks: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> "Stream":
        self._started = time.perf_counter()
        self._threads = [threading.Thread(target=self._tick, daemon=True)]
        self._threads += [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def _tick(self) -> None:
        interval, n = 1 / self.rate, 0
        while not self._stop.is_set():
            due = self._started + n * interval
            delay = due - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            self._ticks.put(n)
            n += 1
        for _ in range(self.workers):
            self._ticks.put(None)

    def _work(self) -> None:
        kinds = list(self.calls)
        while (tick := self._ticks.get()) is not None:
            t = time.perf_counter() - self._started
            kind = kinds[tick % len(kinds)]
            reply = self.calls[kind]()
            upstream = reply.headers.get("x-upstream", reply.headers.get("x-served-by", ""))
            sample = Sample(t, reply.ms, reply.status, upstream, reply.error or str(reply.body.get("error", "")), kind)
            with self._lock:
                self._samples.append(sample)

    def elapsed(self) -> float:
        """Seconds since the stream started: use it to mark events on the timeline."""
        return time.perf_counter() - self._started

    def wait(self, seconds: float, label: str = "streaming") -> None:
        """Let the stream run for a while, with a progress bar."""
        steps = max(1, int(seconds * 10))
        for _ in tqdm(range(steps), desc=label, leave=False, bar_format="{desc}: {percentage:3.0f}%|{bar}|",
                      disable=_quiet()):
            time.sleep(seconds / steps)

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return LoadResult(list(self._samples), time.perf_counter() - self._started)

    def __enter__(self) -> "Stream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self._stop.set()


def run(calls, rate_per_s: float, duration_s: float, label: str = "load") -> LoadResult:
    """A steady stream for `duration_s` seconds, with a progress bar."""
    stream = Stream(calls, rate_per_s).start()
    stream.wait(duration_s, label)
    return stream.stop()


def latencies(call: Callable[[], Reply], n: int, warmup: int = 20, label: str = "requests") -> list[float]:
    """Latency (ms) of n calls made one after another: no queueing, just the path itself."""
    return compare_latencies({label: call}, n, warmup, label)[label]


def compare_latencies(calls: dict[str, Callable[[], Reply]], n: int, warmup: int = 20,
                      label: str = "requests") -> dict[str, list[float]]:
    """Latency (ms) of n calls on each path, taken in turn (A, B, A, B, ...): a busy moment on
    the machine then slows every path alike, so a difference well under a millisecond (one
    more local hop) is not lost in drift, as it is when one path is measured after the other."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    result: dict[str, list[float]] = {name: [] for name in calls}
    for _ in tqdm(range(n), desc=label, leave=False, disable=_quiet()):
        for name, call in calls.items():
            reply = call()
            if not reply.ok:
                raise RuntimeError(f"a measured request ({name}) failed: {reply!r}")
            result[name].append(reply.ms)
    return result


def describe(values: list[float]) -> dict:
    values = sorted(values)
    pick = lambda p: values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]  # noqa: E731
    return {"n": len(values), "p50_ms": round(pick(50), 3), "p90_ms": round(pick(90), 3),
            "p99_ms": round(pick(99), 3), "mean_ms": round(statistics.fmean(values), 3)}
