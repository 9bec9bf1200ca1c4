"""Fault knobs that labs turn on purpose: added latency, error rate, hang, not-ready, crash.

Each business module has its own knobs. In the monolith they all live in one process, so
a crash of one module ends every module; in microservices a module is its own process.

Every knob's effect is bounded, so a forgotten one cannot wedge a lab: latency_ms is at most
60 s per call, and `hang` switches itself off after max_hang_s (setting, default 120 s).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import asdict, dataclass

from .errors import ShopError

MAX_HANG_S = 120.0  # default for max_hang_s: a hang still ends, so a forgotten knob cannot wedge a lab


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    hang: bool = False
    ready: bool = True

    def validate(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ShopError(422, "error_rate must be between 0 and 1")
        if not 0.0 <= self.latency_ms <= 60_000:
            raise ShopError(422, "latency_ms must be between 0 and 60000")


class FaultBoard:
    """The knobs of every module served by this process."""

    def __init__(self, modules: list[str], max_hang_s: float = MAX_HANG_S) -> None:
        self._faults = {m: Faults() for m in modules}
        self._lock = threading.Lock()
        self._unhang = threading.Event()
        self.max_hang_s = max_hang_s
        self._hang_ends: dict[str, float] = {}  # module -> when its hang switches itself off

    @property
    def modules(self) -> list[str]:
        return list(self._faults)

    def get(self, module: str) -> Faults:
        if module not in self._faults:
            raise ShopError(404, f"module {module!r} is not served here; modules: {', '.join(self._faults)}")
        return self._faults[module]

    def update(self, module: str, changes: dict) -> Faults:
        current = self.get(module)
        unknown = set(changes) - set(asdict(current))
        if unknown:
            raise ShopError(422, f"unknown fault knobs {sorted(unknown)}; knobs: {sorted(asdict(current))}")
        for knob, value in changes.items():
            wanted = bool if knob in ("hang", "ready") else (int, float)
            if not isinstance(value, wanted) or (wanted != bool and isinstance(value, bool)):
                raise ShopError(422, f"{knob} must be {'true or false' if wanted == bool else 'a number'}")
        updated = Faults(**{**asdict(current), **changes})
        updated.validate()
        with self._lock:
            if updated.hang and not current.hang:
                self._hang_ends[module] = time.monotonic() + self.max_hang_s
            self._faults[module] = updated
            if not any(f.hang for f in self._faults.values()):
                self._unhang.set()
            else:
                self._unhang.clear()
        return updated

    def reset(self) -> None:
        for module in self._faults:
            self.update(module, asdict(Faults()))

    def wait_while_hung(self, module: str) -> None:
        """Wait until the hang is switched off, or switch it off once max_hang_s have passed."""
        while self.get(module).hang:
            if time.monotonic() >= self._hang_ends.get(module, 0):
                self.update(module, {"hang": False})
                return
            self._unhang.wait(0.2)

    def apply(self, module: str) -> None:
        """Called at the start of every business operation of `module`."""
        faults = self.get(module)
        if faults.hang:
            self.wait_while_hung(module)
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.error_rate and random.random() < faults.error_rate:
            raise ShopError(503, f"injected fault in {module}", module=module)

    def alive(self, module: str) -> None:
        """Liveness also hangs while a module hangs, so a probe can see it."""
        self.wait_while_hung(module)


def crash_soon(delay_s: float = 0.05) -> None:
    """End the whole process right after the current answer is sent (no cleanup: a crash)."""

    def _die() -> None:
        time.sleep(delay_s)
        os._exit(70)

    threading.Thread(target=_die, daemon=True).start()
