"""Settings of the causal intervention eval: which latents, where, how, and how far to follow the effect."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CausalInterventionsConfig(BaseModel):
    """Intervene on latents over a span of positions; follow the effect on the loss and on later latents."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    n_windows: int = Field(default=16, ge=1)
    """Windows to intervene in (one intervention each)."""
    start: int = Field(default=32, ge=1)
    """Text position where the intervention span begins."""
    span: int = Field(default=4, ge=1)
    """Positions intervened on: start .. start + span - 1."""
    n_latents: int = Field(default=5, ge=1)
    """The latents most active at `start` in each window (summed over the span) are the ones intervened on."""
    mode: Literal["ablate", "clamp"] = "ablate"
    """ablate: set them to 0; clamp: set them to `clamp_multiplier` x their largest activation in the window."""
    clamp_multiplier: float = 2.0
    """Clamp value in units of the latent's own window maximum."""
    max_offset: int = Field(default=32, ge=1)
    """Tokens after the span's last position over which the effect is followed."""
    persistence_fraction: float = Field(default=0.1, gt=0, lt=1)
    """The effect persists up to the last offset where it is at least this fraction of its peak."""
