"""`name=value` settings from the command line (`run --config`, `train --set`), validated against a typed model."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tsae_evals.errors import UsageError

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_value(raw: str) -> Any:
    """The value as JSON when it parses (numbers, booleans, lists, null), else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def validated(model: type[ModelT], values: dict[str, Any], *, what: str, fix: str) -> ModelT:
    """`model(**values)`, or a UsageError naming `what` was invalid, the first offending field and `fix`."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "options"
        raise UsageError(f"invalid {what}: {where}: {first['msg']}", fix) from None
