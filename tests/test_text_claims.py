"""Numbers the text states about what a lab measures, checked against that lab's stored
outputs (from a real run), so that a re-run that changes the figure also fails here until
the text says what the run shows."""

from __future__ import annotations

import re

import nbformat
import pytest

from msalab import paths

REPO = paths.REPO


def page(path: str) -> str:
    return (REPO / path).read_text()


def lab_outputs(path: str) -> str:
    """Every text output of a lab notebook, in order, as one string."""
    notebook = nbformat.read(REPO / path, as_version=4)
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text") or output.get("data", {}).get("text/html")
                         or output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def measured(lab: str, pattern: str) -> list[float]:
    found = [float(value) for value in re.findall(pattern, lab_outputs(lab))]
    assert found, f"{lab}: no output matches {pattern!r}; re-run the lab (make labs) or fix the pattern"
    return found


def test_hung_pod_restart_time_matches_the_chapter():
    text = page("book/part3/autoscaling-and-self-healing.md")
    assert "roughly 45 seconds, which is what Lab III.7 measures" in text
    seconds, = measured("labs/part3/07-self-healing-and-autoscaling.ipynb", r"restarted and ready again (\d+) s")
    # The chapter's sum: 12-17 s to detect, 30 s of grace, a second or two to start.
    assert 42 <= seconds <= 50, f"Lab III.7 measured {seconds} s; the chapter says roughly 45 s"


def test_supervisor_heals_within_the_seconds_the_lab_states():
    lab = "labs/part2/08-autoscaling-preview.ipynb"
    intro = nbformat.read(REPO / lab, as_version=4).cells[0].source
    assert "healed within a few seconds" in intro
    gap, = measured(lab, r"failed requests over ([\d.]+) s")
    assert gap < 5, f"Lab II.8 measured a {gap} s gap; its introduction says a few seconds"


def test_catalog_copy_costs_what_lab_one_three_says():
    lab = "labs/part1/03-microservices.ipynb"
    summary = nbformat.read(REPO / lab, as_version=4).cells[24].source
    assert "cost about as much memory as an added monolith copy" in " ".join(summary.split())
    added = measured(lab, r"<td>\d+</td><td>\d+</td><td>(\d+)</td></tr>")
    monolith_added, micro_added = added[-2:]
    assert micro_added == pytest.approx(monolith_added, rel=0.15), (monolith_added, micro_added)


def test_declined_share_in_lab_two_four_is_what_its_text_says():
    lab = "labs/part2/04-centralized-logging.ipynb"
    notebook = nbformat.read(REPO / lab, as_version=4)
    assert "every fifth request is declined, which\nis one order in three" in notebook.cells[3].source
    calls = notebook.cells[4].source
    kinds = re.findall(r'"([a-z ]+)": lambda', calls)
    orders = [k for k in kinds if "order" in k or k == "declined"]
    assert len(kinds) == 5 and len(orders) == 3 and kinds[-1] == "declined", kinds


# --- how long things take: one figure per lab, quoted the same everywhere --------------------

def lab_time(lab: str) -> int:
    """The minutes a lab's header states (its Time row)."""
    intro = nbformat.read(REPO / f"labs/{lab}.ipynb", as_version=4).cells[0].source
    minutes = re.findall(r"^\| Time \| about (\d+) minutes", intro, re.M)
    assert len(minutes) == 1, f"labs/{lab}.ipynb: its header needs one '| Time | about N minutes' row"
    return int(minutes[0])


def chapter_times(chapter: str) -> tuple[int, dict[str, int]]:
    """A chapter's stated reading time, and the time it quotes for each of its labs."""
    found = re.search(r"^\*\*Time:\*\* about (\d+) minutes to read, (.*?)\n\n", page(f"book/{chapter}.md"), re.M | re.S)
    assert found, f"book/{chapter}.md: no '**Time:** about N minutes to read, plus ...' line"
    labs = re.findall(r"(\d+) minutes for\s+\{doc\}`\.\./\.\./labs/([^`]+)`", found.group(2))
    return int(found.group(1)), {lab: int(minutes) for minutes, lab in labs}


def quarter_hours(minutes: int) -> str:
    whole, quarters = divmod(round(minutes / 15), 4)
    return f"{whole or ''}{['', '¼', '½', '¾'][quarters]} hours".lstrip()


PART_CHAPTERS = {
    "part2": ["config-management", "service-discovery", "api-gateway", "centralized-logging", "distributed-tracing",
              "centralized-monitoring", "resilience", "autoscaling-and-self-healing", "service-mesh"],
    "part3": ["pods", "controllers", "services", "ingress-and-gateway-api", "configmaps-and-secrets", "monitoring",
              "autoscaling-and-self-healing"],
}


@pytest.mark.parametrize("chapter", ["part1/monolith", "part1/microservices"]
                         + [f"{part}/{name}" for part, names in PART_CHAPTERS.items() for name in names])
def test_a_chapter_quotes_its_labs_own_time(chapter):
    _, labs = chapter_times(chapter)
    assert labs, f"book/{chapter}.md: its Time line names no lab"
    assert labs == {lab: lab_time(lab) for lab in labs}


@pytest.mark.parametrize("part", PART_CHAPTERS)
def test_a_part_states_the_sum_of_its_chapters_and_labs(part):
    times = [chapter_times(f"{part}/{name}") for name in PART_CHAPTERS[part]]
    reading = sum(read for read, _ in times)
    labs = sum(minutes for _, quoted in times for minutes in quoted.values())
    text = " ".join(page(f"book/{part}/index.md").split())
    count = {7: "seven", 9: "nine"}[len(times)]
    assert (f"**Time:** about {quarter_hours(reading)} to read the {count} chapters" in text
            and f"and about {quarter_hours(labs)} for the" in text), (part, reading, labs)


def test_the_instructors_part_one_plan_uses_the_labs_own_times():
    text = page("book/appendix/instructors.md")
    rows = re.findall(r"^\| ([^|]+?) \|\s*(.*?)\s*\| (\d+) min \|$", text, re.M)
    labs = {re.search(r"labs/(part1/[^`]+)`", content).group(1): int(minutes)
            for block, content, minutes in rows if block.startswith("Lab ")}
    assert labs == {lab: lab_time(lab) for lab in labs} and len(labs) == 4
    total = sum(int(minutes) for _, _, minutes in rows)
    assert f"Part I fits in one afternoon: {quarter_hours(total)} in all" in text, total
