"""Settings of the feature lifetimes eval (definitions in ../shared/metrics.md, "Feature lifetimes")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FeatureLifetimesConfig(BaseModel):
    """Which data, latents and runs count."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    n_windows: int | None = Field(default=None, ge=1)
    """Windows to read; None reads every window of the run."""
    skip_first_positions: int = Field(default=0, ge=0)
    """Text positions dropped at the start of each window (after BOS, which is always dropped)."""
    activation_threshold: float = 0.0
    """A latent is active when its activation exceeds this (0 for ReLU, TopK and JumpReLU SAEs)."""
    dense_threshold: float = Field(default=0.1, gt=0, le=1)
    """Latents firing on more than this share of tokens are excluded from the aggregates and counted."""
    min_completed_runs: int = Field(default=5, ge=1)
    """A latent enters the aggregates once it has this many uncensored runs."""
    min_gaps: int = Field(default=10, ge=2)
    """A latent's burstiness counts once it has this many inter-firing gaps."""
    max_lifetime: int = Field(default=128, ge=2)
    """Survival curve length; longer lifetimes share the last bin."""
    top_latents: int = Field(default=50, ge=0)
    """Most frequently firing latents whose per-latent statistics go into the details."""
