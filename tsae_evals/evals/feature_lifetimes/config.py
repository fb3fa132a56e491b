"""Settings of the feature lifetimes eval (run lengths, survival, persistence ratio, burstiness)."""

from __future__ import annotations

from pydantic import Field

from tsae_evals.evals.streaming import StreamingEvalConfig


class FeatureLifetimesConfig(StreamingEvalConfig):
    """Which data, latents and runs count."""

    min_completed_runs: int = Field(default=5, ge=1)
    """A latent enters the aggregates once it has this many uncensored runs."""
    min_gaps: int = Field(default=10, ge=2)
    """A latent's burstiness counts once it has this many inter-firing gaps."""
    max_lifetime: int = Field(default=128, ge=2)
    """Survival curve length; longer lifetimes share the last bin."""
    top_latents: int = Field(default=50, ge=0)
    """Most frequently firing latents whose per-latent statistics go into the details."""
