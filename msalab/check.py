"""Check cells: assert the real state, and say what to fix when it is not as expected.

    check.that(reply.status == 201, "the order was accepted", fix="start the shop (step 1)")
"""

from __future__ import annotations


class CheckFailed(AssertionError):
    pass


def that(condition: bool, what: str, fix: str) -> None:
    """Print a tick when `condition` holds; otherwise stop the notebook with the fix."""
    if not condition:
        raise CheckFailed(f"✗ {what}: NOT TRUE\n  what to do: {fix}")
    print(f"✓ {what}")


def status(reply, expected: int, what: str, fix: str) -> None:
    that(reply.status == expected, f"{what} (HTTP {expected})",
         f"{fix} (got {reply.status or 'no answer'}: {reply.error or reply.body.get('error', '')})")
