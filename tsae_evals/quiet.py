"""Silence library messages that say nothing the user can act on; progress bars and real problems still show."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

IGNORED_WARNINGS = (
    # Our model is built without weight processing, which is exactly what those kwargs ask for.
    r"\s*This SAE has non-empty model_from_pretrained_kwargs",
    # sae-lens copies its own token tensors; nothing of ours to change.
    r"To copy construct from a tensor",
    # sae-lens compares windows (samples) with tokens: every run with long windows "has fewer samples".
    r"The training dataset contains fewer samples",
)
"""Regexes matched against the start of `warnings.warn` messages."""

IGNORED_LOG_RECORDS = {
    # We hand sae-lens's runner our own windows and model on purpose; the request records both.
    "sae_lens": (r"You just passed in a (dataset|model) which will override",),
}
"""Logger name -> regexes matched against the start of its records' messages."""


class _DropMatching(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.patterns = [re.compile(pattern) for pattern in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.match(message) for pattern in self.patterns)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Within the block, drop the warnings in IGNORED_WARNINGS and the log records in IGNORED_LOG_RECORDS."""
    filters = {name: _DropMatching(patterns) for name, patterns in IGNORED_LOG_RECORDS.items()}
    with warnings.catch_warnings():
        for pattern in IGNORED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for name, log_filter in filters.items():
            logging.getLogger(name).addFilter(log_filter)
        try:
            yield
        finally:
            for name, log_filter in filters.items():
                logging.getLogger(name).removeFilter(log_filter)
