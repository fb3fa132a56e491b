"""Errors the user can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """Bad input: printed as one line naming the problem and the fix; the CLI exits with code 2."""

    def __init__(self, problem: str, fix: str):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}")


class Unavailable(UsageError):
    """An eval whose outside requirements (an LLM endpoint, gated data, a model it supports) are absent: refused
    when named in --evals, reported as not run (with this message) when reached through a group."""


class EvalFailed(Exception):
    """An eval ran and could not produce a result (a library it wraps failed); the run records it and goes on."""


def unknown_name(kind: str, name: str, known: Iterable[str], fix: str, *, where: str = "") -> UsageError:
    """The one "unknown X" error: `unknown {kind} {name!r}{where}`, the closest known names if any, then the fix."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return UsageError(f"unknown {kind} {name!r}{where}", hint + fix)
