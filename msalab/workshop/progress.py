"""The progress board's records and reckoning, apart from its web service (board.py), so
they can be tested without a hub: the reports table, the summary the instructor sees, and
what a report must hold. Runs in the hub's image (beside board.py) and in the course's tests.
"""

from __future__ import annotations

import json
import os

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text, create_engine, insert, select

STUCK_S = float(os.environ.get("MSALAB_BOARD_STUCK_S", "300"))
LIMITS = {"lab": 200, "step": 300, "detail": 2000}
META = MetaData()
REPORTS = Table("reports", META,
                Column("id", Integer, primary_key=True),
                Column("student", String(64), nullable=False, index=True),
                Column("lab", String(LIMITS["lab"]), nullable=False),
                Column("step", String(LIMITS["step"]), nullable=False),
                Column("passed", Boolean, nullable=False),
                Column("detail", Text, nullable=False, default=""),
                Column("at", Float, nullable=False, index=True))


class Store:
    """The reports, in any database SQLAlchemy reaches."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        META.create_all(self.engine)

    def add(self, student: str, lab: str, step: str, passed: bool, detail: str, at: float) -> None:
        with self.engine.begin() as db:
            db.execute(insert(REPORTS).values(student=student, lab=lab, step=step, passed=passed, detail=detail, at=at))

    def rows(self, student: str | None = None) -> list[dict]:
        query = select(REPORTS).order_by(REPORTS.c.at, REPORTS.c.id)
        if student is not None:
            query = query.where(REPORTS.c.student == student)
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]


def summary(rows: list[dict], now: float, stuck_after_s: float = STUCK_S) -> dict:
    """What the instructor's page shows, from the reports in time order:
    - students: each one's latest report (so their current lab and step);
    - stuck: checks whose latest report failed, failing since more than stuck_after_s;
    - labs: per lab, the steps anyone passed and how many of them each student passed."""
    latest: dict[str, dict] = {}
    failing_since: dict[tuple[str, str, str], float] = {}
    passed: dict[str, dict[str, set]] = {}
    for row in rows:
        key = (row["student"], row["lab"], row["step"])
        latest[row["student"]] = row
        if row["passed"]:
            failing_since.pop(key, None)
            passed.setdefault(row["lab"], {}).setdefault(row["student"], set()).add(row["step"])
        else:
            failing_since.setdefault(key, row["at"])  # the first failure since the last pass
    stuck = [{"student": s, "lab": lab, "step": step, "failing_s": round(now - since)}
             for (s, lab, step), since in failing_since.items() if now - since > stuck_after_s]
    labs = {}
    for lab, by_student in sorted(passed.items()):
        steps = set().union(*by_student.values())
        labs[lab] = {"steps": len(steps), "students": {s: len(done) for s, done in sorted(by_student.items())}}
    students = {s: {"lab": r["lab"], "step": r["step"], "passed": r["passed"], "at": r["at"]}
                for s, r in sorted(latest.items())}
    return {"students": students, "stuck": sorted(stuck, key=lambda item: -item["failing_s"]), "labs": labs}


def validate(body: bytes) -> dict:
    """A report's fields, or ValueError saying what is wrong."""
    try:
        report = json.loads(body or b"{}")
    except ValueError:
        raise ValueError("the body is not JSON: send {\"lab\": ..., \"step\": ..., \"passed\": true|false}") from None
    if not isinstance(report, dict):
        raise ValueError("the body must be a JSON object with lab, step and passed")
    for field in ("lab", "step"):
        value = report.get(field)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{field!r} must be a non-empty string")
        if len(value) > LIMITS[field]:
            raise ValueError(f"{field!r} is longer than {LIMITS[field]} characters")
    if not isinstance(report.get("passed"), bool):
        raise ValueError("'passed' must be true or false")
    detail = report.get("detail", "")
    if not isinstance(detail, str):
        raise ValueError("'detail' must be a string")
    return {"lab": report["lab"].strip(), "step": report["step"].strip(), "passed": report["passed"],
            "detail": detail[:LIMITS["detail"]]}
