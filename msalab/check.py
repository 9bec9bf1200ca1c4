"""Check cells: assert the real state, and say what to fix when it is not as expected.

    check.that(reply.status == 201, "the order was accepted", fix="start the shop (step 1)")
"""

from __future__ import annotations

from .workshop import report


class CheckFailed(AssertionError):
    pass


def that(condition: bool, what: str, fix: str) -> None:
    """Print a tick when `condition` holds; otherwise stop the notebook with the fix. In a
    workshop, the outcome also goes to the instructor's progress board (msalab.workshop.report)."""
    if not condition:
        report.send(what, False, fix)
        raise CheckFailed(f"✗ {what}: NOT TRUE\n  what to do: {fix}")
    print(f"✓ {what}")
    report.send(what, True)


def status(reply, expected: int, what: str, fix: str) -> None:
    that(reply.status == expected, f"{what} (HTTP {expected})",
         f"{fix} (got {reply.status or 'no answer'}: {reply.error or reply.body.get('error', '')})")
