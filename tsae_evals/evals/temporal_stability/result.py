"""Result of the temporal stability eval: SAE-Bench metric categories plus the per-lag curve as details."""

from __future__ import annotations

from typing import Any

from tsae_evals.evals import streaming
from tsae_evals.results import EvalResult, MetricCategory, metric


def excess_over_null(score: float, null: float) -> float:
    """(score - null) / (1 - null): 0 at the shuffle null, 1 at perfect stability (scores bounded by 1)."""
    return (score - null) / (1 - null) if null != 1 else float("nan")


class JaccardMetrics(MetricCategory):
    adjacent_jaccard: float = metric(label="jaccard", higher_is_better=True, headline=True)
    """Mean |A_t ∩ A_t+1| / |A_t ∪ A_t+1| over adjacent positions with a non-empty union."""
    adjacent_jaccard_shuffled: float = metric(label="jaccard_null", higher_is_better=None)
    """The same after shuffling positions within each window."""
    adjacent_jaccard_excess: float = metric(label="jaccard_excess", higher_is_better=True, headline=True)
    """(score - shuffled) / (1 - shuffled)."""
    weighted_jaccard: float = metric(label="wjaccard", higher_is_better=True)
    """Mean sum_i min(f_t,i, f_t+1,i) / sum_i max(f_t,i, f_t+1,i) over adjacent pairs with a non-zero denominator."""
    weighted_jaccard_shuffled: float = metric(label="wjaccard_null", higher_is_better=None)
    """The same after shuffling positions within each window."""
    weighted_jaccard_excess: float = metric(label="wjaccard_excess", higher_is_better=True)
    """(score - shuffled) / (1 - shuffled)."""


class SmoothnessMetrics(MetricCategory):
    """T-SAE's activation smoothness (Bhalla et al. 2025, `lipschitz_cont`); definition and deviations in
    `tsae_evals/evals/temporal_stability/smoothness.py`. No latent is excluded as dense."""

    lipschitz: float = metric(label="smoothness", higher_is_better=False, headline=True)
    """Mean over windows of the mean over latents active in the window of max_t |f_t - f_t-1| / ||x_t - x_t-1||,
    f and x in raw input units: lower is smoother."""
    lipschitz_shuffled: float = metric(label="smoothness_null", higher_is_better=None)
    """The same after shuffling positions (inputs and latents together) within each window."""
    lipschitz_high_level: float | None = metric(
        label="smoothness_high", higher_is_better=False, headline=True, default=None
    )
    """The same over the high-level part (first Matryoshka group) alone; None without a Matryoshka split."""
    lipschitz_high_level_shuffled: float | None = metric(
        label="smoothness_high_null", higher_is_better=None, default=None
    )
    """Its shuffle null."""
    lipschitz_low_level: float | None = metric(label="smoothness_low", higher_is_better=False, default=None)
    """The same over the low-level part (every later Matryoshka group); None without a Matryoshka split."""
    lipschitz_low_level_shuffled: float | None = metric(
        label="smoothness_low_null", higher_is_better=None, default=None
    )
    """Its shuffle null."""
    identical_input_pairs: int = metric(label="smoothness_skipped_pairs", higher_is_better=None)
    """Adjacent pairs skipped because their inputs are identical (the ratio would divide by zero)."""


class RandomSAEMetrics(MetricCategory):
    k: int = metric(label="random_k", higher_is_better=None)
    """TopK of the random SAE: the evaluated SAE's L0 on the calibration windows, rounded."""
    adjacent_jaccard: float = metric(label="jaccard_random_sae", higher_is_better=None, headline=True)
    """Adjacent Jaccard of the random SAE's latents on the same tokens."""
    adjacent_jaccard_excess: float = metric(label="jaccard_excess_random_sae", higher_is_better=None)
    """Its excess over its own shuffle null."""
    successive_cosine: float = metric(label="cosine_random_sae", higher_is_better=None)
    """Successive cosine of the random SAE's latents."""
    lag1_mean: float = metric(label="acf1_random_sae", higher_is_better=None)
    """Mean lag-1 autocorrelation of its latents."""
    lag1_excess: float = metric(label="acf1_excess_random_sae", higher_is_better=None)
    """Its excess over its own shuffle null."""
    lipschitz: float = metric(label="smoothness_random_sae", higher_is_better=None, headline=True)
    """Its smoothness (see smoothness.lipschitz), over its whole dictionary."""


class CosineMetrics(MetricCategory):
    successive_cosine: float = metric(label="cosine", higher_is_better=True)
    """Mean cos(f_t, f_t+1) over adjacent positions where both latent vectors are non-zero."""
    successive_cosine_shuffled: float = metric(label="cosine_null", higher_is_better=None)
    """The same after shuffling positions within each window."""
    successive_cosine_excess: float = metric(label="cosine_excess", higher_is_better=True)
    """(score - shuffled) / (1 - shuffled)."""
    input_successive_cosine: float = metric(label="cosine_input", higher_is_better=None)
    """Mean cos(x_t, x_t+1) of the SAE's input (the raw hook activations)."""
    ratio_to_input: float = metric(label="cosine_vs_input", higher_is_better=True)
    """successive_cosine / input_successive_cosine: above 1, the latents are smoother than their input."""


class AutocorrelationMetrics(MetricCategory):
    lag1_mean: float = metric(label="acf1", higher_is_better=True, headline=True)
    """Mean over measured latents of the lag-1 autocorrelation (zeros included, per-window centring)."""
    lag1_median: float = metric(label="acf1_median", higher_is_better=True)
    """Median over measured latents of the lag-1 autocorrelation."""
    lag1_shuffled_mean: float = metric(label="acf1_null", higher_is_better=None)
    """Mean lag-1 autocorrelation after shuffling positions within each window."""
    lag1_excess: float = metric(label="acf1_excess", higher_is_better=True, headline=True)
    """(lag1_mean - shuffled) / (1 - shuffled)."""
    n_latents_measured: int = metric(label="acf_measured", higher_is_better=None)
    """Latents with at least one window where they fire `min_firings` times."""
    coverage: float = metric(label="acf_coverage", higher_is_better=None)
    """n_latents_measured / latents that fired and were not excluded as dense."""


class ExclusionMetrics(MetricCategory):
    n_latents: int = metric(label="d_sae", higher_is_better=None)
    """Width of the SAE."""
    n_dense_excluded: int = metric(label="dense_excluded", higher_is_better=None, headline=True)
    """Latents excluded because they fired on more than `dense_threshold` of the calibration tokens."""
    n_position_excluded: int = metric(label="position_excluded", higher_is_better=None, default=0)
    """Non-dense latents excluded because position explains more than `position_threshold` of their variance."""
    n_dense_over_run: int = metric(label="dense_over_run", higher_is_better=None)
    """Latents above `dense_threshold` over all tokens read (a check on the calibration's choice)."""
    n_dead: int = metric(label="dead", higher_is_better=None)
    """Latents that never fired on any token read."""


class ReferenceMetrics(streaming.ReferenceMetrics):
    explained_variance: float = metric(label="expl_var", higher_is_better=True)
    """1 - squared error / total variance of the input on the same tokens."""


class TemporalStabilityMetrics(MetricCategory):
    jaccard: JaccardMetrics
    """Overlap of adjacent active sets."""
    smoothness: SmoothnessMetrics
    """Largest change of each latent between adjacent tokens per unit change of the input (T-SAE's)."""
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


class LagRow(MetricCategory):
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


class TemporalStabilityResult(EvalResult):
    """What `temporal_stability` returns."""

    metrics: TemporalStabilityMetrics
    """SAE-Bench metric categories."""
    lags: list[LagRow]
    """The autocorrelation curve for k = 1..max_lag."""
    dense_latents: list[int]
    """Indices of the excluded latents (dense or position-tracking)."""

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.lags]

    def unstructured(self) -> dict[str, Any]:
        return {"dense_latents": self.dense_latents}
