"""Steps the learner does: the lab leaves a cell empty, and a check judges the real state.

    task = Exercise(SOLUTIONS, "injection_off", judge=lambda: ..., what="...", hint="...")
    # ... the learner's (empty) cell: the fix goes here ...
    task.check()

`judge` looks at the cluster and returns (fixed?, what it saw). The check prints what it
saw and passes or stops with the hint. The solutions are plain functions in a file next to
the lab that the learner can open; where MSALAB_SOLVE is set (make test sets it, so CI runs
the labs end to end) and the state is still broken, check() first runs the solution of
that name, says so, and judges the result the same way.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Callable

from . import paths
from .check import CheckFailed
from .workshop import report

SOLVE = "MSALAB_SOLVE"


class Exercise:
    def __init__(self, solutions: Path, name: str, judge: Callable[[], tuple[bool, str]], what: str, hint: str,
                 **context) -> None:
        self.solutions, self.name, self.judge, self.what, self.hint = solutions, name, judge, what, hint
        self.context = context  # handed to the solution: cluster, namespace, ...

    def check(self, settle_s: float = 45) -> None:
        fixed, seen = self.judge()
        if not fixed and os.environ.get(SOLVE):
            print(f"({SOLVE} is set: applying solution {self.name}() from {self.solutions.name}, as CI does)")
            self._solution()(**self.context)
        if not fixed:
            fixed, seen = self._settled(settle_s)
        if not fixed:  # what it saw only here: a passing check prints the same every run (nbval compares it)
            report.send(self.what, False, self.hint)  # in a workshop, the board shows who is stuck on which fix
            raise CheckFailed(f"✗ {self.what}: NOT YET (the check sees: {seen})\n  hint: {self.hint}\n"
                              f"  stuck? the solution is {self.name}() in {self.solutions.relative_to(paths.REPO)}")
        print(f"✓ {self.what}")
        report.send(self.what, True)

    def _settled(self, settle_s: float) -> tuple[bool, str]:
        """A change reaches the proxies a few seconds after it is applied: judge again for a
        while before calling it not fixed."""
        deadline = time.monotonic() + settle_s
        while True:
            fixed, seen = self.judge()
            if fixed or time.monotonic() > deadline:
                return fixed, seen
            time.sleep(2)

    def _solution(self) -> Callable:
        spec = importlib.util.spec_from_file_location(self.solutions.stem, self.solutions)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, self.name)
