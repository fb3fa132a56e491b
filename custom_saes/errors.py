"""Errors a recipe raises when its settings cannot work; each names the problem and the fix.

They are plain ValueError/RuntimeError subclasses so that custom_saes stays usable without tsae_evals; the `train`
front-end (tsae_evals.training) turns them into its one-line usage errors.
"""

from __future__ import annotations


class RecipeError(Exception):
    """A training problem the user can fix: `problem` says what is wrong, `fix` what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}")


class InvalidOption(RecipeError, ValueError):
    """A training setting, or the SAE it names, that the recipe cannot use."""


class TrainingDiverged(RecipeError, RuntimeError):
    """The training loss stopped being finite."""
