"""Errors the user can act on."""


class UsageError(Exception):
    """Bad input: printed as one line naming the problem and the fix; the CLI exits with code 2."""

    def __init__(self, problem: str, fix: str):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}")


class EvalFailed(Exception):
    """An eval could not produce a result; the run records it and goes on with the others."""
