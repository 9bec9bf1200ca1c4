"""Errors for learners: what is wrong, and the command that fixes it."""


class LabError(RuntimeError):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem, self.fix = problem, fix

    def _render_traceback_(self) -> list[str]:
        """In a notebook, show the problem and the fix, not a traceback (IPython hook)."""
        return [f"\033[1;31m{self.problem}\033[0m", f"  fix: {self.fix}"]
