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


# --- Part IV: what the chapters quote from the labs' stored runs ------------------------------

PART4_CHAPTER_LABS = ["part4/architecture", "part4/interception", "part4/traffic-management", "part4/resilience",
                      "part4/security", "part4/telemetry", "part4/troubleshooting", "part4/costs"]


@pytest.mark.parametrize("chapter", PART4_CHAPTER_LABS)
def test_a_part_four_chapter_quotes_its_labs_own_time(chapter):
    _, labs = chapter_times(chapter)
    assert labs, f"book/{chapter}.md: its Time line names no lab"
    assert labs == {lab: lab_time(lab) for lab in labs}


def flat(text: str) -> str:
    return " ".join(text.split())


# (chapter, lab, a pattern over the lab's outputs, the chapter's words with the groups it matched)
# The figures come from one run; a re-run changes them, and this fails until the chapter
# says what the stored run shows.
PART4_FIGURES = [
    ("traffic-management", "02-traffic-management", r"200 calls, no rule: \{'v1': (\d+), 'v2': (\d+)\}",
     "were answered {0} times by v1 and {1} times by v2"),
    ("traffic-management", "02-traffic-management", r"200 calls, no rule: \{'v1': \d+, 'v2': (\d+)\}",
     "({0} of 200 in the lab's first step)"),
    ("traffic-management", "02-traffic-management", r"400 calls: \{'v1': \d+, 'v2': (\d+)\}; v2 must",
     "the VirtualService gave v2 {0} of the 400 calls"),
    ("traffic-management", "02-traffic-management", r"400 calls: \{'v1': \d+, 'v2': \d+\}; v2 must.*?"
     r"400 calls: \{'v1': \d+, 'v2': (\d+)\}; v2 must", "400 calls gave v2 {0}, inside the same band"),
    ("traffic-management", "02-traffic-management", r"50 calls answered by: \{'v1': (\d+)\} \| v2's proxy received (\d+) copies",
     "v1 answered all {0} calls, and v2's proxy completed {1} requests more"),
    ("traffic-management", "02-traffic-management", r"v2 must be within (\d+)\.\.(\d+)", "{0} to {1} requests to v2"),
    ("interception", "01-install-and-interception", r"upstream_rq_completed: (\d+) -> (\d+)", "it went from {0} to {1}"),
    ("troubleshooting", "06-troubleshooting", r"100 calls to the catalog: \{'v1': (\d+), 'HTTP 503': (\d+)\}",
     "100 calls gave {0} answers from v1 and {1} such 503s"),
] + [("resilience", "03-resilience", rf"{way}: \{{'success rate %': ([\d.]+), 'p99 s': ([\d.]+), 'slowest s': ([\d.]+), "
      r"'time to recover s': ([\d.]+)\}", f"| {row} | {{0}} % | {{1}} s (slowest {{2}} s) | {{3}} s |")
     for way, row in (("Kubernetes alone", "(a) Kubernetes alone"), ("application library", "(b) the library"),
                      ("the mesh", "(c) the mesh"))]


@pytest.mark.parametrize("chapter, lab, pattern, words", PART4_FIGURES, ids=lambda v: str(v)[:40])
def test_part_four_chapters_quote_their_labs_stored_run(chapter, lab, pattern, words):
    found = re.search(pattern, lab_outputs(f"labs/part4/{lab}.ipynb"), re.S)
    assert found, f"labs/part4/{lab}.ipynb: no output matches {pattern!r}; re-run the lab (make labs) or fix the pattern"
    expected = words.format(*found.groups())
    assert flat(expected) in flat(page(f"book/part4/{chapter}.md")), f"book/part4/{chapter}.md should say: {expected}"


def lab_code_and_outputs(path: str) -> str:
    """What a lab runs and what it printed: a name it reads (a counter) may be only in its code."""
    notebook = nbformat.read(REPO / path, as_version=4)
    return "\n".join([cell.source for cell in notebook.cells if cell.cell_type == "code"] + [lab_outputs(path)])


# Lines and names a chapter shows as a lab's own, which do not change from run to run.
PART4_VERBATIM = [
    ("interception", "01-install-and-interception", r"^-A (?:PREROUTING|OUTPUT|ISTIO_\w+) .*$"),
    ("troubleshooting", "06-troubleshooting", r"^Error \[IST\d+\] .*$"),
    ("interception", "01-install-and-interception", r"cluster\.inbound\|8080\|\|;\.upstream_rq_\w+"),
    ("traffic-management", "02-traffic-management", r"cluster\.inbound\|8080\|\|;\.upstream_rq_\w+"),
    ("troubleshooting", "01-install-and-interception", r"cluster\.inbound\|8080\|\|;\.upstream_rq_\w+"),
    ("security", "04-security", r"http\.inbound_0\.0\.0\.0_8080;\.rbac\.\w+"),
    ("troubleshooting", "04-security", r"http\.inbound_0\.0\.0\.0_8080;\.rbac\.\w+"),
]


@pytest.mark.parametrize("chapter, lab, pattern", PART4_VERBATIM)
def test_part_four_chapters_show_what_their_labs_print(chapter, lab, pattern):
    shown = re.findall(pattern, page(f"book/part4/{chapter}.md"), re.M)
    printed = set(re.findall(pattern, lab_code_and_outputs(f"labs/part4/{lab}.ipynb"), re.M))
    assert shown, f"book/part4/{chapter}.md shows nothing matching {pattern!r}"
    assert printed, f"labs/part4/{lab}.ipynb has nothing matching {pattern!r}; re-run the lab (make labs)"
    assert set(shown) == printed, f"book/part4/{chapter}.md and the lab differ: {sorted(set(shown) ^ printed)}"
