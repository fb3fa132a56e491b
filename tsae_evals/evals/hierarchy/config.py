"""Settings of the hierarchy eval (per-level sparsity and fidelity, mutual information between the levels, and the
upper level's grouping of lower latents against k-means and random groupings)."""

from __future__ import annotations

from pydantic import Field

from tsae_evals.evals.streaming import StreamingEvalConfig


class HierarchyConfig(StreamingEvalConfig):
    """Which tokens and latents count, and how the nulls and baselines are drawn."""

    min_firings: int = Field(default=5, ge=1)
    """A latent enters the mutual information and the groupings once it fired on this many tokens (and is not dense)."""
    null_permutations: int = Field(default=5, ge=2)
    """Permutations of the upper codes across the tokens of each batch, each one null estimate (mean and spread
    reported); each costs one upper x lower count matrix of memory."""
    random_partitions: int = Field(default=20, ge=2)
    """Random groupings of the same group sizes as the upper level's, averaged."""
    kmeans_restarts: int = Field(default=3, ge=1)
    """k-means++ initialisations; the lowest within-cluster sum of squares wins."""
    kmeans_iterations: int = Field(default=100, ge=1)
    """Lloyd iterations per restart at most (it stops when no assignment changes)."""
    top_latents: int = Field(default=50, ge=0)
    """Most frequently firing upper latents whose statistics go into the details."""
