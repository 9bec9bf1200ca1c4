"""The workshop's progress board: a JupyterHub service (python3 -m board in the hub's image).

Students' servers report each check the labs make (msalab.check: student, lab, step, passed)
to POST {prefix}api/reports with their server's hub token; the board asks the hub whose token
it is, so a student can only ever report as themself. Reports go into a database (SQLite on the
hub's volume by default; MSALAB_BOARD_DB takes any SQLAlchemy URL, e.g.
postgresql+psycopg://board:PASSWORD@postgres.example:5432/board).

Pages, behind the hub's login: the instructor (MSALAB_BOARD_INSTRUCTORS) sees the whole class:
who is on which lab, who is stuck (the same check failing for more than MSALAB_BOARD_STUCK_S
seconds, 5 minutes by default), and each lab's progress. A student sees only their own rows.

This file runs in the hub's image, which has JupyterHub, Tornado and SQLAlchemy but not msalab.
"""

from __future__ import annotations

import html
import os
import time
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

from progress import Store, summary, validate  # beside this file in the hub's image (/opt/services)

class Base(HubOAuthenticated, web.RequestHandler):
    def initialize(self, store: Store, instructors: set[str]) -> None:
        self.store, self.instructors = store, instructors

    def is_instructor(self, user: dict) -> bool:
        return user["name"] in self.instructors

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish({"error": message})


class ReportsHandler(Base):
    def post(self) -> None:
        """A check's outcome, from a student's server: only with a token (never a cookie, so
        no page can make a browser report for a student)."""
        if not self.request.headers.get("Authorization", "").lower().startswith("token "):
            return self.fail(401, "no token: send Authorization: token $JUPYTERHUB_API_TOKEN (a student's server has it)")
        user = self.current_user
        if user is None:
            return self.fail(403, "the hub does not accept this token for the board: report refused. In a student's "
                                  "server the token is JUPYTERHUB_API_TOKEN; restarting the server from the hub's "
                                  "home page gives a fresh one")
        try:
            report = validate(self.request.body)
        except ValueError as err:
            return self.fail(400, f"report refused: {err}")
        self.store.add(user["name"], report["lab"], report["step"], report["passed"], report["detail"], time.time())
        self.set_status(201)
        self.finish({"student": user["name"], **report})

    @web.authenticated
    def get(self) -> None:
        """Reports as JSON: all of them for the instructor, else the caller's own only."""
        user, wanted = self.current_user, self.get_argument("student", None)
        if not self.is_instructor(user) and wanted not in (None, user["name"]):
            return self.fail(403, f"students see only their own rows: {user['name']} asked for {wanted}'s")
        student = wanted if self.is_instructor(user) else user["name"]
        self.finish({"reports": self.store.rows(student)})


class SummaryHandler(Base):
    @web.authenticated
    def get(self) -> None:
        if not self.is_instructor(self.current_user):
            return self.fail(403, "the class summary is the instructor's: log in to the hub as the instructor")
        self.finish(summary(self.store.rows(), time.time()))


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="15">
<title>Workshop board</title><style>
body{{font-family:system-ui,sans-serif;margin:1.5rem;max-width:70rem}} table{{border-collapse:collapse;width:100%;margin-bottom:1.5rem}}
th,td{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd}} .fail{{color:#b00020}} .ok{{color:#1b5e20}}
.stuck{{background:#fde7e9}} .bar{{background:#e0e0e0;height:.8rem;width:12rem;display:inline-block}}
.bar span{{background:#1565c0;height:100%;display:block}}</style></head><body>
<h1>Workshop board</h1><p>Signed in as <b>{user}</b>. Refreshes every 15 s. {scope}</p>{body}</body></html>"""


def _row(cells: list[str], css: str = "") -> str:
    return f"<tr class='{css}'>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _table(head: list[str], rows: list[str]) -> str:
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _mark(passed: bool) -> str:
    return "<span class='ok'>✓ passed</span>" if passed else "<span class='fail'>✗ failed</span>"


def _ago(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s ago" if seconds >= 60 else f"{int(seconds)} s ago"


def class_page(data: dict, now: float) -> str:
    esc = html.escape
    stuck = {(item["student"], item["lab"]) for item in data["stuck"]}
    students = [_row([esc(s), esc(r["lab"]), esc(r["step"]), _mark(r["passed"]), _ago(now - r["at"])],
                     "stuck" if (s, r["lab"]) in stuck else "") for s, r in data["students"].items()]
    stuck_rows = [_row([esc(i["student"]), esc(i["lab"]), esc(i["step"]), f"{i['failing_s'] // 60} min"]) for i in data["stuck"]]
    labs = []
    for lab, info in data["labs"].items():
        done = info["students"].values()
        share = sum(done) / (info["steps"] * len(data["students"])) if info["steps"] and data["students"] else 0
        labs.append(_row([esc(lab), f"<span class='bar'><span style='width:{share:.0%}'></span></span> {share:.0%}",
                          f"{sum(1 for d in done if d == info['steps'])} of {len(data['students'])}", str(info["steps"])]))
    return (f"<h2>Stuck ({len(data['stuck'])})</h2>"
            + (_table(["student", "lab", "step failing", "for"], stuck_rows) if stuck_rows else "<p>Nobody.</p>")
            + "<h2>Who is where</h2>" + _table(["student", "lab", "latest step", "result", "when"], students)
            + "<h2>Progress per lab</h2>" + _table(["lab", "steps passed by the class", "students with every step", "steps"], labs))


def own_page(rows: list[dict], now: float) -> str:
    esc = html.escape
    return "<h2>Your checks</h2>" + _table(["lab", "step", "result", "what to do", "when"], [
        _row([esc(r["lab"]), esc(r["step"]), _mark(r["passed"]), esc(r["detail"]), _ago(now - r["at"])])
        for r in reversed(rows)])


class PageHandler(Base):
    @web.authenticated
    def get(self) -> None:
        user, now = self.current_user, time.time()
        if self.is_instructor(user):
            body, scope = class_page(summary(self.store.rows(), now), now), "The whole class."
        else:
            body, scope = own_page(self.store.rows(user["name"]), now), "Your own checks only."
        self.finish(PAGE.format(user=html.escape(user["name"]), scope=scope, body=body))


def app() -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/board/")
    store = Store(os.environ.get("MSALAB_BOARD_DB", "sqlite:////srv/jupyterhub/board.sqlite"))
    context = {"store": store, "instructors": set(filter(None, os.environ.get("MSALAB_BOARD_INSTRUCTORS", "").split(",")))}
    return web.Application([
        (prefix, PageHandler, context),
        (url_path_join(prefix, "api/reports"), ReportsHandler, context),
        (url_path_join(prefix, "api/summary"), SummaryHandler, context),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], cookie_secret=os.urandom(32))


def main() -> None:
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    app().listen(url.port, url.hostname)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
