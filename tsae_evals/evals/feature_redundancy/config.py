"""Settings of the feature redundancy eval (Pearson correlation between latents, decoder cosines)."""

from __future__ import annotations

from pydantic import Field

from tsae_evals.evals.streaming import StreamingEvalConfig


class FeatureRedundancyConfig(StreamingEvalConfig):
    """Which latents are correlated, what counts as redundant and what is saved."""

    min_firings: int = Field(default=10, ge=1)
    """A latent enters the pairs once it is active on this many scored tokens (alive)."""
    redundancy_threshold: float = Field(default=0.5, gt=0, lt=1)
    """A pair of latents is redundant when their Pearson r exceeds this."""
    max_latents: int = Field(default=4096, ge=2)
    """Latents tracked (d_sae x d_sae float64 cross-products: 4096 is 134 MB per matrix, two matrices with the
    null). Wider SAEs track the max_latents most frequently active latents of the first batch."""
    shuffle_null: bool = True
    """Also accumulate the null: each tracked latent's column rolled by its own seeded offset over the batch's
    tokens (rates and autocorrelation kept, alignment between latents destroyed). Doubles the matrix work."""
    block_size: int = Field(default=64, ge=2)
    """The most frequent alive latents whose correlation matrix is saved and drawn."""
    top_pairs: int = Field(default=50, ge=0)
    """Most correlated pairs listed in the details."""
