"""What the streaming temporal evals share: the settings that pick windows, positions and latents, and the
reference numbers every temporal score is read against."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tsae_evals.results import MetricCategory, metric


class StreamingEvalConfig(BaseModel):
    """Which windows, positions and latents a streaming eval reads."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    n_windows: int | None = Field(default=None, ge=1)
    """Windows to read; None reads every window of the run."""
    skip_first_positions: int = Field(default=0, ge=0)
    """Text positions dropped at the start of each window (after BOS, which is always dropped): attention sinks."""
    activation_threshold: float = 0.0
    """A latent is active when its activation exceeds this (0 for ReLU, TopK and JumpReLU SAEs)."""
    dense_threshold: float = Field(default=0.1, gt=0, le=1)
    """Latents firing on more than this share of tokens are excluded from the aggregates and counted."""


class ReferenceMetrics(MetricCategory):
    """Sparsity of the tokens scored, to read the temporal scores against."""

    l0: float = metric(label="l0", higher_is_better=None)
    """Mean active latents per token on the tokens scored."""
    tokens_evaluated: int = metric(label="tokens", higher_is_better=None)
    """Tokens scored (BOS and skipped positions excluded)."""
    windows_evaluated: int = metric(label="windows", higher_is_better=None)
    """Windows read."""
