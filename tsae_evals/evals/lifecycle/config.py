"""Settings of the lifecycle eval (births and deaths of latents per position, against the shuffle null)."""

from __future__ import annotations

from pydantic import Field

from tsae_evals.evals.streaming import StreamingEvalConfig


class LifecycleConfig(StreamingEvalConfig):
    """Which data and latents count, and how the turnover interval is drawn."""

    bootstrap_samples: int = Field(default=200, ge=10)
    """Poisson-bootstrap replicates over windows (each window weighted by a Poisson(1) draw per replicate)."""
    confidence: float = Field(default=0.95, gt=0, lt=1)
    """Coverage of the percentile bootstrap intervals."""
