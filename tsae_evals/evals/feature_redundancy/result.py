"""Result of the feature redundancy eval: aggregates as SAE-Bench metric categories, the most correlated pairs as
details and the correlation matrix of the most frequent latents as unstructured output."""

from __future__ import annotations

from typing import Any

from tsae_evals.evals.streaming import ReferenceMetrics
from tsae_evals.results import EvalResult, MetricCategory, metric

DEFINITION = (
    "Pearson r between two latents' activations (zeros included) over every scored token (BOS and skipped "
    "positions cut), from streamed sums and float64 cross-products. Pairs: every pair of counted latents (tracked, "
    "not dense, active on at least min_firings tokens). Shuffle null: each tracked latent's column rolled over the "
    "batch's tokens by its own seeded offset before the cross-products (each latent's values, rate and "
    "autocorrelation kept; pairs whose offsets nearly coincide keep part of their alignment). Chance: independent "
    "latents with N tokens give r about N(0, 1/N), so E|r| = sqrt(2 / (pi N)), P(r > threshold) = 1 - Phi(threshold "
    "sqrt(N)) and the expected maximum of m - 1 such r is Blom's normal quantile over sqrt(N); decoder chance: the "
    "same maximum over sqrt(d_in) for random directions."
)


class CorrelationMetrics(MetricCategory):
    """Pearson correlation of latent activations across tokens, over pairs of counted latents."""

    mean_abs_r: float = metric(label="mean_abs_r", higher_is_better=False, headline=True)
    """Mean |r| over pairs of counted latents."""
    mean_abs_r_shuffled: float = metric(label="mean_abs_r_null", higher_is_better=None, headline=True)
    """The same under the roll null (each latent's tokens offset independently)."""
    mean_abs_r_chance: float = metric(label="mean_abs_r_chance", higher_is_better=None)
    """sqrt(2 / (pi N)): E|r| of independent latents over N tokens."""
    redundant_pair_fraction: float = metric(label="redundant_pairs", higher_is_better=False, headline=True)
    """Share of pairs with r above `redundancy_threshold` (default 0.5)."""
    redundant_pair_fraction_shuffled: float = metric(label="redundant_pairs_null", higher_is_better=None)
    """The same under the roll null."""
    redundant_pair_fraction_chance: float = metric(label="redundant_pairs_chance", higher_is_better=None)
    """1 - Phi(threshold sqrt(N)): the same for independent latents (normal approximation)."""
    n_redundant_pairs: int = metric(label="n_redundant_pairs", higher_is_better=None)
    """Pairs with r above the threshold."""
    mean_max_r: float = metric(label="max_r", higher_is_better=False, headline=True)
    """Mean over counted latents of the largest r with another counted latent."""
    mean_max_r_shuffled: float = metric(label="max_r_null", higher_is_better=None)
    """The same under the roll null."""
    mean_max_r_chance: float = metric(label="max_r_chance", higher_is_better=None)
    """Expected maximum of m - 1 independent N(0, 1/N) correlations (Blom's approximation)."""


class DecoderMetrics(MetricCategory):
    """Cosine similarity between decoder rows of the counted latents."""

    mean_max_cosine: float = metric(label="decoder_max_cos", higher_is_better=False, headline=True)
    """Mean over counted latents of the largest cosine between its decoder row and another counted latent's."""
    mean_max_cosine_chance: float = metric(label="decoder_max_cos_chance", higher_is_better=None)
    """The same expected for random directions in d_in dimensions (Blom's approximation over sqrt(d_in))."""
    redundant_pair_cosine: float = metric(label="redundant_pair_cos", higher_is_better=None)
    """Mean decoder cosine over redundant pairs (high: duplicated features; low: co-occurring ones); NaN without
    a redundant pair."""


class ExclusionMetrics(MetricCategory):
    n_latents: int = metric(label="d_sae", higher_is_better=None)
    """Width of the SAE."""
    n_latents_tracked: int = metric(label="tracked", higher_is_better=None)
    """Latents whose cross-products are accumulated (all up to `max_latents`)."""
    n_dense_excluded: int = metric(label="dense_excluded", higher_is_better=None)
    """Tracked latents active on more than `dense_threshold` of the tokens."""
    n_latents_counted: int = metric(label="counted", higher_is_better=None, headline=True)
    """Tracked, non-dense latents active on at least `min_firings` tokens."""
    n_pairs: int = metric(label="pairs", higher_is_better=None)
    """Pairs of counted latents."""


class FeatureRedundancyMetrics(MetricCategory):
    correlation: CorrelationMetrics
    """Redundancy of activations."""
    decoder: DecoderMetrics
    """Redundancy of decoder directions."""
    exclusions: ExclusionMetrics
    """What was counted."""
    reference: ReferenceMetrics
    """Sparsity of the same tokens (all latents)."""


class CorrelatedPair(MetricCategory):
    latent_a: int
    """First latent index."""
    latent_b: int
    """Second latent index."""
    correlation: float
    """Pearson r of their activations."""
    correlation_shuffled: float
    """Their r under the roll null (NaN when it is off)."""
    decoder_cosine: float
    """Cosine between their decoder rows (NaN without a decoder)."""
    firing_rate_a: float
    """Share of tokens where the first is active."""
    firing_rate_b: float
    """Share of tokens where the second is active."""


class FeatureRedundancyResult(EvalResult):
    """What `feature_redundancy` returns."""

    metrics: FeatureRedundancyMetrics
    """SAE-Bench metric categories."""
    top_pairs: list[CorrelatedPair]
    """The most correlated pairs of counted latents."""
    block_latents: list[int]
    """The most frequent counted latents (most frequent first), rows and columns of `block_correlation`."""
    block_correlation: list[list[float]]
    """Pearson r among `block_latents`."""
    tracked_by: str
    """Which latents were tracked: all of them, or the most frequent of the first batch."""
    dense_latents: list[int]
    """Tracked latents excluded as dense."""

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.top_pairs]

    def unstructured(self) -> dict[str, Any]:
        return {
            "block_latents": self.block_latents,
            "block_correlation": self.block_correlation,
            "tracked_by": self.tracked_by,
            "dense_latents": self.dense_latents,
            "definition": DEFINITION,
        }
