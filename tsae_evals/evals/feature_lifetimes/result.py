"""Result of the feature lifetimes eval: aggregates as SAE-Bench metric categories, top latents as details."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

CENSORING_POLICY = (
    "Runs touching a window's first scored position are left-censored and runs touching its last are "
    "right-censored; both are dropped from per-latent lifetimes, singleton fractions and persistence ratios. "
    "The pooled survival curve is a Kaplan-Meier estimate that keeps right-censored runs as censored "
    "observations (left-censored runs are dropped). The shuffle null goes through the same steps."
)


class _Metrics(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class LifetimeMetrics(_Metrics):
    mean_lifetime: float
    """Mean over measured latents of the latent's mean uncensored run length."""
    median_lifetime: float
    """Median over measured latents of the same."""
    mean_lifetime_shuffled: float
    """mean_lifetime after shuffling positions within each window (rates kept, order destroyed)."""
    km_mean_lifetime: float
    """Restricted mean lifetime (sum of the Kaplan-Meier survival curve), runs of measured latents pooled."""
    singleton_fraction: float
    """Share of uncensored runs of measured latents that last one token."""
    singleton_fraction_shuffled: float
    """The same under the shuffle null."""


class PersistenceMetrics(_Metrics):
    persistence_ratio_mean: float
    """Mean over measured latents of R = mean lifetime x (1 - firing rate): 1 is chance, above 1 persistent."""
    persistence_ratio_median: float
    """Median over measured latents of R."""
    persistence_ratio_shuffled_mean: float
    """Mean R under the shuffle null (near 1, below it by the censoring of long runs)."""
    fraction_above_null: float
    """Share of measured latents whose R exceeds the same latent's shuffled R."""


class BurstinessMetrics(_Metrics):
    burstiness_mean: float
    """Mean over latents with enough gaps of B = (sd - mean) / (sd + mean) of inter-firing gaps (Goh & Barabasi)."""
    burstiness_shuffled_mean: float
    """The same under the shuffle null (a Poisson-like process gives about 0)."""
    n_latents_measured: int
    """Latents with at least `min_gaps` gaps."""


class CensoringMetrics(_Metrics):
    completed_runs: int
    """Uncensored runs, all latents."""
    right_censored_runs: int
    """Runs cut off by a window's end."""
    left_censored_runs: int
    """Runs already active at a window's first scored position."""


class ExclusionMetrics(_Metrics):
    n_latents: int
    """Width of the SAE."""
    n_dense_excluded: int
    """Latents above `dense_threshold` over the tokens read."""
    n_latents_measured: int
    """Non-dense latents with at least `min_completed_runs` uncensored runs."""
    coverage: float
    """n_latents_measured / non-dense latents that fired."""


class ReferenceMetrics(_Metrics):
    l0: float
    """Mean active latents per token on the tokens scored."""
    tokens_evaluated: int
    """Tokens scored."""
    windows_evaluated: int
    """Windows read."""


class FeatureLifetimesMetrics(_Metrics):
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


class LatentLifetimes(_Metrics):
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


class FeatureLifetimesResult(BaseModel):
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

    def metrics_dict(self) -> dict[str, dict[str, Any]]:
        return self.metrics.model_dump()

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

    def summary(self) -> dict[str, float | int | str | None]:
        return {
            "lifetime": self.metrics.lifetimes.mean_lifetime,
            "lifetime_null": self.metrics.lifetimes.mean_lifetime_shuffled,
            "persistence": self.metrics.persistence.persistence_ratio_mean,
            "singleton": self.metrics.lifetimes.singleton_fraction,
            "burstiness": self.metrics.burstiness.burstiness_mean,
            "measured": self.metrics.exclusions.n_latents_measured,
        }
