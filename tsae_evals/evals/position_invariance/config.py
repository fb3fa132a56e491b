"""Settings of the position invariance eval (share of each latent's variance between chunks of w positions)."""

from __future__ import annotations

from pydantic import Field

from tsae_evals.evals.streaming import StreamingEvalConfig


class PositionInvarianceConfig(StreamingEvalConfig):
    """Chunk sizes, which latents count and how the aggregate's interval is drawn."""

    chunk_size: int = Field(default=8, ge=2)
    """w: positions per chunk (the temporal consistency SAE's default window_size)."""
    second_chunk_size: int | None = Field(default=16, ge=2)
    """A second scale reported beside the first (the seed trained with windows 8 and 16); None skips it."""
    min_firings: int = Field(default=10, ge=1)
    """A latent is scored once it is active on this many counted positions (a single firing scores the same
    whatever its position, so rare latents say nothing)."""
    top_latents: int = Field(default=50, ge=0)
    """Scored latents with the largest invariance above their own chance value whose scores go into the details."""
    bootstrap_samples: int = Field(default=1000, ge=10)
    """Resamples of the scored latents behind the 95% intervals of the aggregates."""
    histogram_bins: int = Field(default=20, ge=2)
    """Bins over [0, 1] of the per-latent score histogram (unstructured output and plot)."""

    @property
    def chunk_sizes(self) -> list[int]:
        """Every scale scored, the headline one first."""
        return [self.chunk_size] + ([] if self.second_chunk_size is None else [self.second_chunk_size])
