"""A lab's checks, reported to the workshop's progress board (msalab.workshop.board).

Only in a student's server of a workshop, where the hub sets MSALAB_BOARD_URL and
JUPYTERHUB_API_TOKEN (the server's own token: the board learns the student from it). Anywhere
else this does nothing. A report that fails never stops the lab: the check's own result is
what counts, and the reason is printed once.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import PurePosixPath

TIMEOUT_S = 3
_warned: set[str] = set()


def enabled() -> bool:
    return bool(os.environ.get("MSALAB_BOARD_URL") and os.environ.get("JUPYTERHUB_API_TOKEN"))


def current_lab() -> str:
    """The notebook being run, as part3/01-pods: Jupyter tells its kernels (JPY_SESSION_NAME);
    MSALAB_LAB overrides it, for a lab run outside Jupyter."""
    path = os.environ.get("MSALAB_LAB") or os.environ.get("JPY_SESSION_NAME") or "unknown"
    parts = PurePosixPath(path.replace("\\", "/")).with_suffix("").parts
    for index in range(len(parts) - 1, -1, -1):  # the folder nearest the notebook: labs/part3/...
        if re.fullmatch(r"part\d+", parts[index]):
            return "/".join(parts[index:])
    return parts[-1] if parts else "unknown"


def send(step: str, passed: bool, detail: str = "") -> dict | None:
    """POST one check to the board; the board's answer, or None (and one printed reason) if it failed."""
    if not enabled():
        return None
    body = json.dumps({"lab": current_lab(), "step": step[:300], "passed": passed, "detail": detail[:2000]}).encode()
    request = urllib.request.Request(os.environ["MSALAB_BOARD_URL"].rstrip("/") + "/api/reports", data=body, method="POST",
                                     headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as err:
        reason = f"the board refused the report (HTTP {err.code}): {_error_text(err)}"
    except (OSError, ValueError) as err:
        reason = f"the board did not answer ({err})"
    if reason not in _warned:  # once per reason, not after every check
        _warned.add(reason)
        print(f"  (progress board: {reason}; your check's result above still stands)")
    return None


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        return json.loads(err.read()).get("error", "")
    except (OSError, ValueError):
        return ""
