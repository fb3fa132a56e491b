"""Settings of the temporal stability eval (definitions in docs/metrics: adjacent Jaccard, cosine, lag-k ACF)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TemporalStabilityConfig(BaseModel):
    """How much data to read and which latents and positions count."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    n_windows: int | None = Field(default=None, ge=1)
    """Windows to read; None reads every window of the run."""
    skip_first_positions: int = Field(default=0, ge=0)
    """Text positions dropped at the start of each window (after BOS, which is always dropped): attention sinks."""
    activation_threshold: float = 0.0
    """A latent is active when its activation exceeds this (0 for ReLU, TopK and JumpReLU SAEs)."""
    dense_threshold: float = Field(default=0.1, gt=0, le=1)
    """Latents firing on more than this share of calibration tokens are excluded and counted."""
    position_threshold: float = Field(default=0.5, gt=0, le=1)
    """Latents whose variance is explained by position beyond this share (on calibration windows) are excluded."""
    random_sae_windows: int = Field(default=16, ge=1)
    """Calibration windows the random-SAE baseline is scored on (a fixed cost, whatever the run's length)."""
    calibration_windows: int = Field(default=32, ge=1)
    """Windows whose firing rates decide the dense latents; held in memory once, then scored like the rest."""
    max_lag: int = Field(default=10, ge=1)
    """Autocorrelation is reported for lags 1..max_lag."""
    min_firings: int = Field(default=20, ge=2)
    """A latent's autocorrelation in a window counts only if it fires at least this often there."""
