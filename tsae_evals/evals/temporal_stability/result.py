"""Result of the temporal stability eval: SAE-Bench metric categories plus the per-lag curve as details."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def excess_over_null(score: float, null: float) -> float:
    """(score - null) / (1 - null): 0 at the shuffle null, 1 at perfect stability (scores bounded by 1)."""
    return (score - null) / (1 - null) if null != 1 else float("nan")


class _Metrics(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class JaccardMetrics(_Metrics):
    adjacent_jaccard: float
    """Mean |A_t ∩ A_t+1| / |A_t ∪ A_t+1| over adjacent positions with a non-empty union."""
    adjacent_jaccard_shuffled: float
    """The same after shuffling positions within each window."""
    adjacent_jaccard_excess: float
    """(score - shuffled) / (1 - shuffled)."""
    weighted_jaccard: float
    """Mean sum_i min(f_t,i, f_t+1,i) / sum_i max(f_t,i, f_t+1,i) over adjacent pairs with a non-zero denominator."""
    weighted_jaccard_shuffled: float
    """The same after shuffling positions within each window."""
    weighted_jaccard_excess: float
    """(score - shuffled) / (1 - shuffled)."""


class SmoothnessMetrics(_Metrics):
    activation_jump: float
    """Mean over (window, firing latent) of max_t |f_t+1 - f_t| / max_t f_t: 1 = switches fully in one token."""
    activation_jump_shuffled: float
    """The same after shuffling positions within each window."""
    input_jump: float
    """Mean over windows of max_t |x_t+1 - x_t| / max_t |x_t| of the SAE's input."""
    jump_ratio_to_input: float
    """activation_jump / input_jump: lower is smoother relative to the activations (our reading of T-SAE's
    smoothness: the largest adjacent jump over the input's)."""


class RandomSAEMetrics(_Metrics):
    k: int
    """TopK of the random SAE: the evaluated SAE's L0 on the calibration windows, rounded."""
    adjacent_jaccard: float
    """Adjacent Jaccard of the random SAE's latents on the same tokens."""
    adjacent_jaccard_excess: float
    """Its excess over its own shuffle null."""
    successive_cosine: float
    """Successive cosine of the random SAE's latents."""
    lag1_mean: float
    """Mean lag-1 autocorrelation of its latents."""
    lag1_excess: float
    """Its excess over its own shuffle null."""
    activation_jump: float
    """Its activation_jump (see smoothness)."""


class CosineMetrics(_Metrics):
    successive_cosine: float
    """Mean cos(f_t, f_t+1) over adjacent positions where both latent vectors are non-zero."""
    successive_cosine_shuffled: float
    """The same after shuffling positions within each window."""
    successive_cosine_excess: float
    """(score - shuffled) / (1 - shuffled)."""
    input_successive_cosine: float
    """Mean cos(x_t, x_t+1) of the SAE's input (the raw hook activations)."""
    ratio_to_input: float
    """successive_cosine / input_successive_cosine: above 1, the latents are smoother than their input."""


class AutocorrelationMetrics(_Metrics):
    lag1_mean: float
    """Mean over measured latents of the lag-1 autocorrelation (zeros included, per-window centring)."""
    lag1_median: float
    """Median over measured latents of the lag-1 autocorrelation."""
    lag1_shuffled_mean: float
    """Mean lag-1 autocorrelation after shuffling positions within each window."""
    lag1_excess: float
    """(lag1_mean - shuffled) / (1 - shuffled)."""
    n_latents_measured: int
    """Latents with at least one window where they fire `min_firings` times."""
    coverage: float
    """n_latents_measured / latents that fired and were not excluded as dense."""


class ExclusionMetrics(_Metrics):
    n_latents: int
    """Width of the SAE."""
    n_dense_excluded: int
    """Latents excluded because they fired on more than `dense_threshold` of the calibration tokens."""
    n_position_excluded: int = 0
    """Non-dense latents excluded because position explains more than `position_threshold` of their variance."""
    n_dense_over_run: int
    """Latents above `dense_threshold` over all tokens read (a check on the calibration's choice)."""
    n_dead: int
    """Latents that never fired on any token read."""


class ReferenceMetrics(_Metrics):
    l0: float
    """Mean active latents per token on the tokens scored."""
    explained_variance: float
    """1 - squared error / total variance of the input on the same tokens."""
    tokens_evaluated: int
    """Tokens scored (BOS and skipped positions excluded)."""
    windows_evaluated: int
    """Windows read."""


class TemporalStabilityMetrics(_Metrics):
    jaccard: JaccardMetrics
    """Overlap of adjacent active sets."""
    smoothness: SmoothnessMetrics
    """Largest adjacent jumps of latents against the input's."""
    cosine: CosineMetrics
    """Direction similarity of adjacent latent vectors."""
    autocorrelation: AutocorrelationMetrics
    """Per-latent lag-1 autocorrelation; every lag is in the details."""
    exclusions: ExclusionMetrics
    """What was excluded and why."""
    reference: ReferenceMetrics
    """Sparsity and fidelity to read the temporal scores against."""
    random_sae: RandomSAEMetrics | None = None
    """The same scores for a random SAE of the same width at the same L0, on the first calibration windows."""


class LagRow(_Metrics):
    lag: int
    """Lag k in tokens."""
    mean: float
    """Mean over measured latents of the lag-k autocorrelation."""
    median: float
    """Median over measured latents."""
    shuffled_mean: float
    """Mean after the within-window shuffle."""
    excess: float
    """(mean - shuffled_mean) / (1 - shuffled_mean)."""
    n_latents_measured: int
    """Latents measured at this lag."""


class TemporalStabilityResult(BaseModel):
    """What `temporal_stability` returns."""

    metrics: TemporalStabilityMetrics
    """SAE-Bench metric categories."""
    lags: list[LagRow]
    """The autocorrelation curve for k = 1..max_lag."""
    dense_latents: list[int]
    """Indices of the excluded latents (dense or position-tracking)."""

    def metrics_dict(self) -> dict[str, dict[str, Any]]:
        return self.metrics.model_dump()

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.lags]

    def unstructured(self) -> dict[str, Any]:
        return {"dense_latents": self.dense_latents}

    def summary(self) -> dict[str, float | int | str | None]:
        return {
            "jaccard": self.metrics.jaccard.adjacent_jaccard,
            "jaccard_excess": self.metrics.jaccard.adjacent_jaccard_excess,
            "jaccard_random_sae": self.metrics.random_sae.adjacent_jaccard if self.metrics.random_sae else None,
            "acf1": self.metrics.autocorrelation.lag1_mean,
            "acf1_excess": self.metrics.autocorrelation.lag1_excess,
            "dense_excl": self.metrics.exclusions.n_dense_excluded,
        }
