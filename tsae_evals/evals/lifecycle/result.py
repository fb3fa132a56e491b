"""Result of the lifecycle eval: turnover against the shuffle null as metric categories, per-position curves as
unstructured data."""

from __future__ import annotations

from typing import Any

from tsae_evals.evals.streaming import ReferenceMetrics
from tsae_evals.results import EvalResult, MetricCategory, metric

DEFINITIONS = (
    "Over the scored positions of each window (BOS and skipped positions cut), a latent is born at t when it is "
    "inactive at t-1 and active at t, and dies at t when it is active at t-1 and inactive at t; the first scored "
    "position has no t-1 and counts neither. Turnover = (births + deaths) / exposure, pooled over windows and "
    "non-dense latents, where exposure sums (active(t-1) + active(t)) / 2 over the same transitions: an "
    "independently firing latent of rate p scores 2(1 - p), one that never switches scores 0. The null shuffles "
    "positions within each window (rates and per-position active sets kept, order destroyed). Intervals: percentile "
    "Poisson bootstrap over windows, the same weights for the SAE and its null."
)


class TurnoverMetrics(MetricCategory):
    turnover: float = metric(
        label="turnover", higher_is_better=False, headline=True, interval=("turnover_low", "turnover_high")
    )
    """Births plus deaths per token per active latent (non-dense latents pooled)."""
    turnover_low: float = metric(label="turnover_low", higher_is_better=None)
    """Lower end of the bootstrap interval of turnover."""
    turnover_high: float = metric(label="turnover_high", higher_is_better=None)
    """Upper end of the bootstrap interval of turnover."""
    turnover_shuffled: float = metric(label="turnover_null", higher_is_better=None, headline=True)
    """Turnover after shuffling positions within each window."""
    turnover_ratio: float = metric(
        label="turnover_ratio",
        higher_is_better=False,
        headline=True,
        interval=("turnover_ratio_low", "turnover_ratio_high"),
    )
    """turnover / turnover_shuffled: 1 is chance, below 1 latents switch less often than their rates imply."""
    turnover_ratio_low: float = metric(label="turnover_ratio_low", higher_is_better=None)
    """Lower end of the bootstrap interval of the ratio (paired: the same windows for SAE and null)."""
    turnover_ratio_high: float = metric(label="turnover_ratio_high", higher_is_better=None)
    """Upper end of the bootstrap interval of the ratio."""


class RateMetrics(MetricCategory):
    births_per_token: float = metric(label="births", higher_is_better=None)
    """Mean births per transition (token), non-dense latents summed."""
    deaths_per_token: float = metric(label="deaths", higher_is_better=None)
    """Mean deaths per transition (token), non-dense latents summed."""
    births_per_token_shuffled: float = metric(label="births_null", higher_is_better=None)
    """The same under the shuffle null."""
    deaths_per_token_shuffled: float = metric(label="deaths_null", higher_is_better=None)
    """The same under the shuffle null."""
    active_per_token: float = metric(label="active", higher_is_better=None)
    """Mean active non-dense latents per scored token."""


class LifecycleExclusions(MetricCategory):
    n_latents: int = metric(label="d_sae", higher_is_better=None)
    """Width of the SAE."""
    n_dense_excluded: int = metric(label="dense_excluded", higher_is_better=None)
    """Latents above `dense_threshold` over the tokens read (they barely switch and would dilute turnover)."""
    n_latents_fired: int = metric(label="fired", higher_is_better=None)
    """Non-dense latents active at least once."""


class LifecycleMetrics(MetricCategory):
    turnover: TurnoverMetrics
    """How often latents switch, against chance."""
    rates: RateMetrics
    """Births, deaths and active latents per token."""
    exclusions: LifecycleExclusions
    """What was excluded and why."""
    reference: ReferenceMetrics
    """Sparsity of the same tokens (all latents)."""


class LifecycleResult(EvalResult):
    """What `lifecycle` returns."""

    metrics: LifecycleMetrics
    """SAE-Bench metric categories."""
    positions: list[int]
    """Window positions of the curves below (BOS is position 0)."""
    births: list[float]
    """Mean births per window at each position (non-dense latents summed; 0 at the first scored position)."""
    deaths: list[float]
    """Mean deaths per window at each position."""
    active: list[float]
    """Mean active non-dense latents at each position."""
    births_shuffled: list[float]
    """Births per position under the shuffle null."""
    deaths_shuffled: list[float]
    """Deaths per position under the shuffle null."""
    dense_latents: list[int]
    """Indices excluded as dense."""

    def unstructured(self) -> dict[str, Any]:
        return {
            "positions": self.positions,
            "births": self.births,
            "deaths": self.deaths,
            "active": self.active,
            "births_shuffled": self.births_shuffled,
            "deaths_shuffled": self.deaths_shuffled,
            "dense_latents": self.dense_latents,
            "definitions": DEFINITIONS,
        }
