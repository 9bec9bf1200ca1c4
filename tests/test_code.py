"""The course's own Python reads clean: no undefined or shadowed names, no unused imports.
(pyflakes finds, for one, a local variable that hides a module, which only fails at run time
in a code path such as `make bench` that no other test runs.)"""

from __future__ import annotations

import subprocess
import sys

from msalab import paths

SOURCES = ["msalab", "bench", "lab-services", "tests"]


def test_pyflakes_finds_nothing():
    found = subprocess.run([sys.executable, "-m", "pyflakes", *SOURCES], cwd=paths.REPO,
                           capture_output=True, text=True)
    assert found.returncode == 0, found.stdout + found.stderr
