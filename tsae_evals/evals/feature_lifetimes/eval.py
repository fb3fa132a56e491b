"""Feature lifetimes: how long latents stay on, against the independent-firing null; censoring handled."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.evals.feature_lifetimes.config import FeatureLifetimesConfig
from tsae_evals.evals.feature_lifetimes.result import FeatureLifetimesResult
from tsae_evals.registry import register_streaming_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape, ScoredPositionsScorer


def _plots(ctx: EvalContext, cfg: FeatureLifetimesConfig, result: FeatureLifetimesResult, stem: Path) -> list[Path]:
    from tsae_evals import plots

    path = stem.with_name(stem.name + "_lifetimes.png")
    return [plots.survival(result.survival, result.survival_shuffled, result.lifetime_histogram, path)]


def _check(shape: RunShape, cfg: FeatureLifetimesConfig) -> None:
    shape.scored_start(cfg.skip_first_positions)


@register_streaming_eval(
    "feature_lifetimes", version=1, config=FeatureLifetimesConfig, group="temporal", plots=_plots, check=_check
)
def feature_lifetimes(ctx: EvalContext, cfg: FeatureLifetimesConfig) -> ScoredPositionsScorer:
    """Run lengths, survival, persistence ratio and burstiness of latents, each against a shuffle null."""
    from tsae_evals.context import ScoredPositionsScorer
    from tsae_evals.evals.feature_lifetimes.stream import LifetimeScorer

    inner = LifetimeScorer(ctx.sae.cfg.d_sae, cfg, ctx.seed)
    start = ctx.scored_start(cfg.skip_first_positions)
    return ScoredPositionsScorer(cfg.n_windows, start, lambda batch: inner.add(batch.latents), inner.finish)
