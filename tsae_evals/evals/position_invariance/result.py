"""Result of the position invariance eval: aggregates as SAE-Bench metric categories, top latents as details."""

from __future__ import annotations

from typing import Any

from tsae_evals.evals.streaming import ReferenceMetrics
from tsae_evals.results import EvalResult, MetricCategory, metric

DEFINITION = (
    "Positions after BOS and skip_first_positions are cut, from the first scored one, into chunks of w consecutive "
    "positions that never cross windows; the positions left over at a window's end (fewer than w) are not counted. "
    "Per latent, over every counted position: invariance = 1 - SS_within / SS_total, SS_within = sum over chunks of "
    "squared deviations from the chunk's mean, SS_total = squared deviations from the latent's overall mean (an "
    "eta squared: the share of its variance lying between chunks). Shuffle null: the counted positions of each "
    "window are permuted (one permutation per window and scale) and the score recomputed. Chance: its exact "
    "expectation under that permutation, rho + (1 - rho) (M - 1) / (n - 1), with rho the share of the latent's "
    "variance between windows, M chunks and n counted positions per window ((K - 1) / (N - 1) for one window)."
)


class InvarianceMetrics(MetricCategory):
    """Chunks of `chunk_size` positions (default 8)."""

    mean_invariance: float = metric(
        label="invariance",
        higher_is_better=True,
        headline=True,
        interval=("mean_invariance_ci_low", "mean_invariance_ci_high"),
    )
    """Mean over scored latents of 1 - within-chunk SS / total SS (1: constant inside every chunk)."""
    median_invariance: float = metric(label="invariance_median", higher_is_better=True)
    """Median over scored latents of the same."""
    mean_invariance_shuffled: float = metric(label="invariance_null", higher_is_better=None, headline=True)
    """The same after shuffling the counted positions within each window."""
    mean_invariance_chance: float = metric(label="invariance_chance", higher_is_better=None)
    """Mean over scored latents of the score's exact expectation under that shuffle (see DEFINITION)."""
    invariance_excess: float = metric(
        label="invariance_excess",
        higher_is_better=True,
        headline=True,
        interval=("invariance_excess_ci_low", "invariance_excess_ci_high"),
    )
    """(mean - mean shuffled) / (1 - mean shuffled): 0 at the shuffle null, 1 for constant chunks."""
    fraction_above_null: float = metric(label="invariance_above_null", higher_is_better=True)
    """Share of scored latents whose score exceeds the same latent's shuffled score."""
    mean_invariance_ci_low: float = metric(label="invariance_ci_low", higher_is_better=None)
    """2.5% quantile of the mean over bootstrap resamples of the scored latents."""
    mean_invariance_ci_high: float = metric(label="invariance_ci_high", higher_is_better=None)
    """97.5% quantile of the same."""
    invariance_excess_ci_low: float = metric(label="invariance_excess_ci_low", higher_is_better=None)
    """2.5% quantile of the excess over the same resamples (real and shuffled scores resampled together)."""
    invariance_excess_ci_high: float = metric(label="invariance_excess_ci_high", higher_is_better=None)
    """97.5% quantile of the same."""
    between_window_share: float = metric(label="between_window_share", higher_is_better=None)
    """Mean over scored latents of the share of variance between windows (what no within-window shuffle moves)."""
    chunk_size: int = metric(label="chunk_size", higher_is_better=None)
    """w, positions per chunk."""


class SecondScaleMetrics(MetricCategory):
    """Chunks of `second_chunk_size` positions (default 16), over the same scored latents."""

    mean_invariance: float = metric(label="invariance_2", higher_is_better=True)
    """Mean over scored latents of the score with the second chunk size."""
    mean_invariance_shuffled: float = metric(label="invariance_2_null", higher_is_better=None)
    """The same after shuffling the counted positions within each window."""
    mean_invariance_chance: float = metric(label="invariance_2_chance", higher_is_better=None)
    """Mean exact expectation under that shuffle."""
    invariance_excess: float = metric(label="invariance_2_excess", higher_is_better=True)
    """(mean - mean shuffled) / (1 - mean shuffled)."""
    fraction_above_null: float = metric(label="invariance_2_above_null", higher_is_better=True)
    """Share of scored latents whose score exceeds their own shuffled score."""
    chunk_size: int = metric(label="chunk_size_2", higher_is_better=None)
    """Positions per chunk."""


class ExclusionMetrics(MetricCategory):
    n_latents: int = metric(label="d_sae", higher_is_better=None)
    """Width of the SAE."""
    n_dense_excluded: int = metric(label="dense_excluded", higher_is_better=None)
    """Latents active on more than `dense_threshold` of the counted positions."""
    n_latents_measured: int = metric(label="measured", higher_is_better=None, headline=True)
    """Non-dense latents active on at least `min_firings` counted positions, with non-zero variance."""
    coverage: float = metric(label="coverage", higher_is_better=None)
    """n_latents_measured / non-dense latents that fired."""


class PositionInvarianceMetrics(MetricCategory):
    invariance: InvarianceMetrics
    """Position invariance at the first chunk size."""
    second_scale: SecondScaleMetrics | None = None
    """The same at the second chunk size; None when it is switched off."""
    exclusions: ExclusionMetrics
    """What was excluded and why."""
    reference: ReferenceMetrics
    """Sparsity of the counted positions (first chunk size)."""


class LatentInvariance(MetricCategory):
    latent: int
    """Latent index."""
    firing_rate: float
    """Share of counted positions where it is active."""
    invariance: float
    """Its score at the first chunk size."""
    invariance_shuffled: float
    """Its score under the shuffle null."""
    invariance_chance: float
    """The score's exact expectation under the shuffle null."""
    between_window_share: float
    """Share of its variance between windows."""
    invariance_second: float
    """Its score at the second chunk size (NaN when switched off)."""


class PositionInvarianceResult(EvalResult):
    """What `position_invariance` returns."""

    metrics: PositionInvarianceMetrics
    """SAE-Bench metric categories."""
    top_latents: list[LatentInvariance]
    """Scored latents with the largest invariance above their own chance value."""
    histogram: list[int]
    """Scored latents by invariance (first chunk size), `histogram_bins` equal bins over [0, 1]."""
    histogram_shuffled: list[int]
    """The same under the shuffle null."""
    dense_latents: list[int]
    """Indices excluded as dense."""

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.top_latents]

    def unstructured(self) -> dict[str, Any]:
        return {
            "histogram": self.histogram,
            "histogram_shuffled": self.histogram_shuffled,
            "dense_latents": self.dense_latents,
            "definition": DEFINITION,
        }
