"""The course's own Python reads clean: no undefined or shadowed names, no unused imports.
(pyflakes finds, for one, a local variable that hides a module, which only fails at run time
in a code path such as `make bench` that no other test runs.)"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from msalab import paths

SOURCES = ["msalab", "bench", "lab-services", "tests"]


def test_pyflakes_finds_nothing():
    found = subprocess.run([sys.executable, "-m", "pyflakes", *SOURCES], cwd=paths.REPO,
                           capture_output=True, text=True)
    assert found.returncode == 0, found.stdout + found.stderr


def _msalab_imports(source: Path) -> set[str]:
    """The msalab modules one file imports, at module level or inside functions."""
    module = ".".join(source.relative_to(paths.REPO).with_suffix("").parts)
    package = module if source.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from ..images import x, from . import components
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from pkg import name` imports pkg.name when that is a module
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    modules = {m.removesuffix(".__init__") for m in _msalab_modules()}
    return {name for name in found if name in modules and name != module.removesuffix(".__init__")}


def _msalab_modules() -> dict[str, Path]:
    return {".".join(p.relative_to(paths.REPO).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted((paths.REPO / "msalab").rglob("*.py"))}


def test_msalab_has_no_import_cycles():
    """Every import goes one way: a module never imports (even inside a function, even through
    others) a module that imports it back, so `images` builds and `components` runs, say."""
    graph = {name: _msalab_imports(path) for name, path in _msalab_modules().items()}
    graph = {name: imports - {"msalab"} for name, imports in graph.items()}  # the package's own __init__
    cycles = []
    for start in graph:
        seen, todo = set(), [(start, [start])]
        while todo:
            name, chain = todo.pop()
            for nxt in sorted(graph[name]):
                if nxt == start:
                    cycles.append(" -> ".join(chain + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    todo.append((nxt, chain + [nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))
