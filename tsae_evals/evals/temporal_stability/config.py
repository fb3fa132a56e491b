"""Settings of the temporal stability eval (adjacent Jaccard, cosine, lag-k ACF, smoothness)."""

from __future__ import annotations

from pydantic import Field

from tsae_evals.evals.streaming import StreamingEvalConfig


class TemporalStabilityConfig(StreamingEvalConfig):
    """How much data to read and which latents and positions count (dense latents: on the calibration windows)."""

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
