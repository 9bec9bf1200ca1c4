"""A student at the workshop's hub, from outside the cluster, as their browser would be: the
hub's real login form, their server started through the hub's API, code run in a kernel of
their server (Jupyter's REST API and its WebSocket), and the progress board's API.

The tests and the capacity benchmark use it; instructors can too (the guide's "check the room").
"""

from __future__ import annotations

import json
import time
import uuid

import requests
import websocket

from ..errors import LabError


class Student:
    def __init__(self, hub_url: str, name: str, password: str) -> None:
        self.hub, self.name, self.password = hub_url.rstrip("/"), name, password
        self.web = requests.Session()
        self._token: str | None = None

    # -- the hub ---------------------------------------------------------------------------
    def log_in(self) -> None:
        """The login form, as a browser posts it (with the form's XSRF token)."""
        self.web.get(f"{self.hub}/hub/login", timeout=30).raise_for_status()
        reply = self.web.post(f"{self.hub}/hub/login", allow_redirects=False, timeout=30,
                              data={"username": self.name, "password": self.password, "_xsrf": self._xsrf()})
        if reply.status_code != 302:
            raise LabError(f"the hub refused {self.name}'s login (HTTP {reply.status_code}): {login_error(reply.text)}",
                           "check the name and the workshop's password: python -m msalab workshop status --passwords")

    def _xsrf(self) -> str:
        """The hub's XSRF cookie. A restarted hub sets a new one beside the old (another path),
        and checks the new one: then both are dropped and the hub's home page gives a fresh one."""
        cookies = [c for c in self.web.cookies if c.name == "_xsrf"]
        if len(cookies) > 1:
            for cookie in cookies:
                self.web.cookies.clear(cookie.domain, cookie.path, cookie.name)
            self.web.get(f"{self.hub}/hub/home", timeout=30)
            cookies = [c for c in self.web.cookies if c.name == "_xsrf"]
        return cookies[0].value if cookies else ""

    def _hub_api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-XSRFToken": self._xsrf()}
        return self.web.request(method, f"{self.hub}/hub/api{path}", headers=headers, timeout=60, **kwargs)

    def start_server(self, timeout_s: float = 300) -> float:
        """Ask the hub for this student's server and wait until it is ready; seconds it took."""
        start = time.monotonic()
        reply = self._hub_api("POST", f"/users/{self.name}/server")
        if reply.status_code not in (201, 202, 400):  # 400: already running
            raise LabError(f"the hub did not start {self.name}'s server: HTTP {reply.status_code} {reply.text[:300]}",
                           "python -m msalab workshop status")
        while time.monotonic() - start < timeout_s:
            server = self._hub_api("GET", f"/users/{self.name}").json().get("servers", {}).get("", {})
            if server.get("ready"):
                return time.monotonic() - start
            time.sleep(1)
        raise LabError(f"{self.name}'s server was not ready after {timeout_s:.0f} s",
                       f"python -m msalab kubectl -- describe pod -n msalab-workshop -l msalab.dev/student={self.name}")

    def token(self) -> str:
        """An API token of this student's (the hub gives it the student's own rights)."""
        if self._token is None:
            reply = self._hub_api("POST", f"/users/{self.name}/tokens", json={"note": "msalab workshop client", "expires_in": 7200})
            reply.raise_for_status()
            self._token = reply.json()["token"]
        return self._token

    # -- the student's server ----------------------------------------------------------------
    def run(self, code: str, notebook: str = "part3/01-pods.ipynb", timeout_s: float = 300) -> tuple[str, str | None]:
        """Run code in a kernel of the student's server, opened for `notebook` (so the lab's
        checks report that lab); (what it printed, the error or None)."""
        headers = {"Authorization": f"token {self.token()}"}
        base = f"{self.hub}/user/{self.name}"
        reply = requests.post(f"{base}/api/sessions", headers=headers, timeout=60,
                              json={"path": notebook, "type": "notebook", "name": notebook.rsplit("/", 1)[-1],
                                    "kernel": {"name": "python3"}})
        reply.raise_for_status()
        kernel = reply.json()["kernel"]["id"]
        socket = websocket.create_connection(f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels",
                                             header=[f"Authorization: token {self.token()}"], timeout=timeout_s)
        try:
            return _execute(socket, code, timeout_s)
        finally:
            socket.close()

    def run_lab(self, notebook: str, timeout_s: float = 600) -> tuple[int, str | None, str]:
        """Every code cell of a lab (labs/NOTEBOOK, as in the course), in order, in one kernel
        of the student's server, as Run All would; (cells run, the first error or None, what
        the failing cell printed). The lab's exercises run with their solutions (MSALAB_SOLVE)."""
        cells = lab_cells(notebook)
        self.run("import os; os.environ['MSALAB_SOLVE'] = '1'; os.environ['MSALAB_NO_PROGRESS'] = '1'", notebook)
        for number, source in enumerate(cells, 1):
            printed, error = self.run(source, notebook, timeout_s)
            if error:
                return number, error, printed
        return len(cells), None, ""

    # -- the board ------------------------------------------------------------------------------
    def board(self, method: str, path: str = "api/reports", token: str | None = None, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.hub}/services/board/{path}", timeout=30,
                                headers={"Authorization": f"token {token or self.token()}"}, **kwargs)


def lab_cells(notebook: str, count: int | None = None) -> list[str]:
    """The code cells of a lab (labs/NOTEBOOK), exactly as learners run them; the first `count`."""
    import nbformat

    from .. import paths

    cells = [c.source for c in nbformat.read(paths.REPO / "labs" / notebook, as_version=4).cells if c.cell_type == "code"]
    return cells[:count]


def _execute(socket, code: str, timeout_s: float) -> tuple[str, str | None]:
    msg_id = uuid.uuid4().hex
    socket.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "", "session": msg_id,
                                       "version": "5.3"}, "parent_header": {}, "metadata": {}, "channel": "shell",
                            "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False}}))
    printed, error, deadline = [], None, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = json.loads(socket.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            printed.append(content["text"])
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(printed), error
    raise LabError(f"the kernel did not finish within {timeout_s:.0f} s", "the student's server: python -m msalab workshop status")


def login_error(page: str) -> str:
    """The reason the hub gives: its login page's error, or its error page's message."""
    import html
    import re
    found = re.search(r'<p class="login_error">\s*(.*?)\s*</p>', page, re.S) or \
        re.search(r"<h1>\s*\d+ : .*?</h1>\s*<p>\s*(.*?)\s*</p>", page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1)).strip()) if found else "no reason on the page"
