"""Errors for learners: what is wrong, and the command that fixes it."""


class LabError(RuntimeError):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem, self.fix = problem, fix
