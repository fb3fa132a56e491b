"""Result of the feature lifetimes eval: aggregates as SAE-Bench metric categories, top latents as details."""

from __future__ import annotations

from typing import Any

from tsae_evals.evals.streaming import ReferenceMetrics
from tsae_evals.results import EvalResult, MetricCategory, metric

CENSORING_POLICY = (
    "Runs touching a window's first scored position are left-censored and runs touching its last are "
    "right-censored; both are dropped from per-latent lifetimes, singleton fractions and persistence ratios. "
    "The pooled survival curve is a Kaplan-Meier estimate that keeps right-censored runs as censored "
    "observations (left-censored runs are dropped). The shuffle null goes through the same steps."
)


class LifetimeMetrics(MetricCategory):
    mean_lifetime: float = metric(label="lifetime", higher_is_better=True, headline=True)
    """Mean over measured latents of the latent's mean uncensored run length."""
    median_lifetime: float = metric(label="lifetime_median", higher_is_better=True)
    """Median over measured latents of the same."""
    mean_lifetime_shuffled: float = metric(label="lifetime_null", higher_is_better=None, headline=True)
    """mean_lifetime after shuffling positions within each window (rates kept, order destroyed)."""
    km_mean_lifetime: float = metric(label="lifetime_km", higher_is_better=True)
    """Restricted mean lifetime (sum of the Kaplan-Meier survival curve), runs of measured latents pooled."""
    singleton_fraction: float = metric(label="singleton", higher_is_better=False, headline=True)
    """Share of uncensored runs of measured latents that last one token."""
    singleton_fraction_shuffled: float = metric(label="singleton_null", higher_is_better=None)
    """The same under the shuffle null."""


class PersistenceMetrics(MetricCategory):
    persistence_ratio_mean: float = metric(label="persistence", higher_is_better=True, headline=True)
    """Mean over measured latents of R = mean lifetime x (1 - firing rate): 1 is chance, above 1 persistent."""
    persistence_ratio_median: float = metric(label="persistence_median", higher_is_better=True)
    """Median over measured latents of R."""
    persistence_ratio_shuffled_mean: float = metric(label="persistence_null", higher_is_better=None)
    """Mean R under the shuffle null (near 1, below it by the censoring of long runs)."""
    fraction_above_null: float = metric(label="above_null", higher_is_better=True)
    """Share of measured latents whose R exceeds the same latent's shuffled R."""


class BurstinessMetrics(MetricCategory):
    burstiness_mean: float = metric(label="burstiness", higher_is_better=None, headline=True)
    """Mean over latents with enough gaps of B = (sd - mean) / (sd + mean) of inter-firing gaps (Goh & Barabasi)."""
    burstiness_shuffled_mean: float = metric(label="burstiness_null", higher_is_better=None)
    """The same under the shuffle null (a Poisson-like process gives about 0)."""
    n_latents_measured: int = metric(label="burst_measured", higher_is_better=None)
    """Latents with at least `min_gaps` gaps."""


class CensoringMetrics(MetricCategory):
    completed_runs: int = metric(label="completed_runs", higher_is_better=None)
    """Uncensored runs, all latents."""
    right_censored_runs: int = metric(label="right_censored", higher_is_better=None)
    """Runs cut off by a window's end."""
    left_censored_runs: int = metric(label="left_censored", higher_is_better=None)
    """Runs already active at a window's first scored position."""


class ExclusionMetrics(MetricCategory):
    n_latents: int = metric(label="d_sae", higher_is_better=None)
    """Width of the SAE."""
    n_dense_excluded: int = metric(label="dense_excluded", higher_is_better=None)
    """Latents above `dense_threshold` over the tokens read."""
    n_latents_measured: int = metric(label="measured", higher_is_better=None, headline=True)
    """Non-dense latents with at least `min_completed_runs` uncensored runs."""
    coverage: float = metric(label="coverage", higher_is_better=None)
    """n_latents_measured / non-dense latents that fired."""


class FeatureLifetimesMetrics(MetricCategory):
    lifetimes: LifetimeMetrics
    """How long latents stay on."""
    persistence: PersistenceMetrics
    """Lifetimes against the independent-firing null."""
    burstiness: BurstinessMetrics
    """Clustering of firings in time."""
    censoring: CensoringMetrics
    """How many runs the windows cut off."""
    exclusions: ExclusionMetrics
    """What was excluded and why."""
    reference: ReferenceMetrics
    """Sparsity of the same tokens."""


class LatentLifetimes(MetricCategory):
    latent: int
    """Latent index."""
    firing_rate: float
    """Share of scored tokens where it is active."""
    completed_runs: int
    """Uncensored runs."""
    mean_lifetime: float
    """Mean uncensored run length (NaN without one)."""
    singleton_fraction: float
    """Share of its uncensored runs lasting one token."""
    persistence_ratio: float
    """mean_lifetime x (1 - firing_rate)."""
    burstiness: float
    """B of its inter-firing gaps (NaN with fewer than two)."""
    censored_runs: int
    """Left- or right-censored runs."""


class FeatureLifetimesResult(EvalResult):
    """What `feature_lifetimes` returns."""

    metrics: FeatureLifetimesMetrics
    """SAE-Bench metric categories."""
    top_latents: list[LatentLifetimes]
    """Per-latent statistics of the most frequently firing latents."""
    survival: list[float]
    """Kaplan-Meier P(lifetime >= L) for L = 1..max_lifetime, measured latents pooled."""
    survival_shuffled: list[float]
    """The same under the shuffle null."""
    lifetime_histogram: list[int]
    """Uncensored runs of measured latents by length (index L; the last bin holds longer runs)."""
    dense_latents: list[int]
    """Indices excluded as dense."""

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.top_latents]

    def unstructured(self) -> dict[str, Any]:
        return {
            "survival": self.survival,
            "survival_shuffled": self.survival_shuffled,
            "lifetime_histogram": self.lifetime_histogram,
            "dense_latents": self.dense_latents,
            "censoring_policy": CENSORING_POLICY,
        }
