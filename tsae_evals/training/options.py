"""`--set NAME=VALUE` strings, validated against an architecture's options model."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from custom_saes.training.registry import TrainingArchitecture
from tsae_evals.errors import UsageError


def parse_options(architecture: TrainingArchitecture, assignments: tuple[str, ...]) -> BaseModel:
    """`name=value` strings (value parsed as JSON when it parses) validated against the architecture's options."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise UsageError(f"malformed --set {assignment!r}", "write it as name=value, e.g. --set window_size=8")
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    try:
        return architecture.options_cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        fields = ", ".join(architecture.options_cls.model_fields) or "none"
        raise UsageError(
            f"invalid --set for {architecture.name}: {'.'.join(map(str, first['loc'])) or 'options'}: {first['msg']}",
            f"{architecture.name} takes: {fields} (python -m tsae_evals list --archs)",
        ) from None
