"""Settings every probe eval has (each eval's config subclasses `ProbeSettings` and adds its own)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tsae_evals.probing.items import ProbeItem, read_items
from tsae_evals.probing.probes import K_VALUES


def _probe_size(value: int) -> int:
    if value not in K_VALUES:
        raise ValueError(f"must be one of {list(K_VALUES)}")
    return value


ProbeSize = Annotated[int, AfterValidator(_probe_size)]
"""A probe size k for a single-k readout: one of the sizes every probe is fitted at (K_VALUES)."""


class ProbeSettings(BaseModel):
    """Where the items come from, how many go through the model at once, and the bootstrap intervals."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    items_file: Path | None = None
    """A JSONL file of probe items (tsae_evals.probing.items.ProbeItem fields, one item per line) used instead of
    the eval's own generator; None: the generator."""
    batch_size: int = Field(default=64, ge=1)
    """Items per model forward."""
    n_bootstrap: int = Field(default=1000, ge=100)
    """Bootstrap resamples of the test items for every accuracy's interval."""
    confidence: float = Field(default=0.95, gt=0, lt=1)
    """Coverage of the bootstrap percentile intervals."""

    def load_items(self, generate: Callable[[], list[ProbeItem]], generator_name: str) -> tuple[list[ProbeItem], str]:
        """`(items, source)`: the items file's items when set, else `generate()`; `source` names which (the file's
        path, or `generator_name`, which should carry the generator's version)."""
        if self.items_file is not None:
            return read_items(self.items_file), str(self.items_file)
        return generate(), generator_name
