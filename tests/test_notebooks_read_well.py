"""The labs read well in JupyterLab (root labs/, no MyST there) as well as in the book:
no MyST-only syntax shown as text, no link that cannot open in JupyterLab, no test marker
in the code a learner reads, and every check cell still compared by nbval. Fast: it only
reads the notebooks."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import nbformat
import pytest
import yaml
from nbval.plugin import metadata_tags

from msalab import paths

LABS = paths.REPO / "labs"
NOTEBOOKS = sorted(LABS.glob("*/*.ipynb"))
CHECK_TAG = "nbval-check-output"

MYST_TARGET = re.compile(r"^[ \t]*\([^()\s]+\)=[ \t]*$", re.M)  # (label)=
MYST_ROLE = re.compile(r"\{[a-z][\w:-]*\}`")  # {ref}`...`, {doc}`...`
MYST_DIRECTIVE = re.compile(r"^[ \t]*(```+|:::+)[ \t]*\{", re.M)  # ```{note} / :::{note}
LINK = re.compile(r"\]\(([^)\s]+)")  # [text](target
NBVAL_COMMENT = re.compile(r"^[ \t]*#[ \t]*NBVAL_\w+", re.M)
CALLS_CHECK = re.compile(r"\bcheck\.\w+\(")


def book_pages() -> set[str]:
    """The book's pages, as _toc.yml names them (book/part1/monolith, ...)."""
    def files(entries):
        for entry in entries:
            if "file" in entry:
                yield entry["file"]
            yield from files(entry.get("chapters", []) + entry.get("sections", []))
    toc = yaml.safe_load((paths.REPO / "_toc.yml").read_text())
    return {toc["root"], *files(toc.get("parts", []))}


def cells(notebook: Path, kind: str):
    for number, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        if cell.cell_type == kind:
            yield number, cell


def lab_id(notebook: Path) -> str:
    return notebook.relative_to(LABS).as_posix()


def test_every_lab_is_looked_at():
    assert len(NOTEBOOKS) >= 20, NOTEBOOKS


def test_the_tag_is_the_one_nbval_compares_outputs_for():
    # nbval derives its tags from its comment markers: NBVAL_CHECK_OUTPUT -> nbval-check-output
    assert metadata_tags.get(CHECK_TAG) == "check", sorted(metadata_tags)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lab_id)
def test_no_myst_only_syntax_in_the_text(notebook):
    """JupyterLab shows MyST labels, roles and directives as literal text."""
    found = [f"cell {number}: {match.group(0).strip()}"
             for number, cell in cells(notebook, "markdown")
             for pattern in (MYST_TARGET, MYST_ROLE, MYST_DIRECTIVE)
             for match in pattern.finditer(cell.source)]
    assert not found, (f"{lab_id(notebook)}: MyST-only syntax a learner reads as text: {found}. Drop an "
                       "unused (label)=; link a lab by its .ipynb, a chapter by /book/<page>.md")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lab_id)
def test_every_link_opens_in_jupyterlab_and_in_the_book(notebook):
    """A relative link must stay inside labs/ (JupyterLab's root) and name a file there; a
    chapter is linked by its path from the repository root, /book/<page>.md, which the book
    resolves and JupyterLab's server answers (msalab.bookserver)."""
    pages = book_pages()
    problems = []
    for number, cell in cells(notebook, "markdown"):
        for target in LINK.findall(cell.source):
            path = target.split("#", 1)[0]
            if not path or re.match(r"^[a-z][a-z0-9+.-]*:", path):
                continue  # an anchor in this notebook, or a full URL
            if "../../book/" in path:
                problems.append(f"cell {number}: {target} leaves JupyterLab's root (write /book/...)")
            elif path.startswith("/"):
                page = PurePosixPath(path[1:])
                if page.parts[0] != "book" or page.suffix != ".md" or str(page.with_suffix("")) not in pages:
                    problems.append(f"cell {number}: {target} is not /book/<a page of _toc.yml>.md")
            else:
                inside = (notebook.parent / path).resolve()
                if not inside.is_relative_to(LABS.resolve()) or not inside.exists():
                    problems.append(f"cell {number}: {target} is not a file inside labs/")
    assert not problems, f"{lab_id(notebook)}: {problems}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lab_id)
def test_no_nbval_marker_in_the_code(notebook):
    found = [f"cell {number}: {match.group(0).strip()}" for number, cell in cells(notebook, "code")
             for match in NBVAL_COMMENT.finditer(cell.source)]
    assert not found, (f"{lab_id(notebook)}: nbval markers in the code learners read: {found}; "
                       f"use the cell tag instead (# NBVAL_CHECK_OUTPUT -> {CHECK_TAG})")


KIND_ONLY = paths.kind_only_labs()  # never run here: committed without outputs, skipped by CI by name


@pytest.mark.parametrize("notebook", [n for n in NOTEBOOKS if lab_id(n) not in KIND_ONLY], ids=lab_id)
def test_every_check_cell_is_compared_by_nbval(notebook):
    """--nbval-lax compares only tagged cells, and only those with a stored output."""
    untagged, unrun = [], []
    for number, cell in cells(notebook, "code"):
        tagged = CHECK_TAG in cell.metadata.get("tags", [])
        if CALLS_CHECK.search(cell.source) and not tagged:
            untagged.append(number)
        if tagged and (cell.execution_count is None or not cell.outputs):
            unrun.append(number)
    assert not untagged, f"{lab_id(notebook)}: check cells {untagged} lack the tag {CHECK_TAG}"
    assert not unrun, f"{lab_id(notebook)}: tagged cells {unrun} have no stored output to compare (make labs)"
    assert any(CALLS_CHECK.search(cell.source) for _, cell in cells(notebook, "code")), \
        f"{lab_id(notebook)} has no check cell"


@pytest.mark.parametrize("lab", sorted(KIND_ONLY))
def test_a_kind_only_lab_says_so_first_and_stores_no_output(lab):
    """A lab that cannot run here has no outputs that a run here could have produced, and its
    first cell tells the learner where it runs."""
    notebook = nbformat.read(LABS / lab, as_version=4)
    assert "kind" in notebook.cells[0].source[:600], f"{lab}: say at the top that it needs kind"
    assert not any(cell.get("outputs") or cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")
