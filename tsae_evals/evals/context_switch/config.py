"""Settings of the context-switch eval (definition in ../shared/metrics.md, "Context-switch detection")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ContextSwitchConfig(BaseModel):
    """Which splices to build and which window sizes to score."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    window_sizes: list[int] = [1, 4, 16]
    """w of the boundary score b_t = 1 - cos(mean f over t-w..t-1, mean f over t..t+w-1)."""
    n_sequences: int | None = Field(default=None, ge=1)
    """Spliced sequences to score; None uses every pair the run's windows give (n_windows // 2)."""
    histogram_bins: int = Field(default=4096, ge=16)
    """AUROC is computed from score histograms on [0, 2] (streaming, memory independent of tokens)."""

    @field_validator("window_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if not sizes or min(sizes) < 1:
            raise ValueError("window_sizes must be a non-empty list of positive integers")
        return sorted(set(sizes))
