"""`--set NAME=VALUE` strings, validated against an architecture's options model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from custom_saes.training.registry import TrainingArchitecture
from tsae_evals.errors import UsageError
from tsae_evals.settings import parse_value, validated


def parse_options(architecture: TrainingArchitecture, assignments: tuple[str, ...]) -> BaseModel:
    """`name=value` strings (value parsed as JSON when it parses) validated against the architecture's options."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise UsageError(f"malformed --set {assignment!r}", "write it as name=value, e.g. --set window_size=8")
        values[name] = parse_value(raw)
    fields = ", ".join(architecture.options_cls.model_fields) or "none"
    return validated(
        architecture.options_cls,
        values,
        what=f"--set for {architecture.name}",
        fix=f"{architecture.name} takes: {fields} (python -m tsae_evals list --archs)",
    )
