"""Feature lifetimes: how long latents stay on, against the independent-firing null; censoring handled."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.evals.feature_lifetimes.config import FeatureLifetimesConfig
from tsae_evals.evals.feature_lifetimes.result import FeatureLifetimesResult
from tsae_evals.registry import register_streaming_eval

if TYPE_CHECKING:
    from tsae_evals.context import EncodedBatch, EvalContext


def _plots(ctx: EvalContext, cfg: FeatureLifetimesConfig, result: FeatureLifetimesResult, stem: Path) -> list[Path]:
    from tsae_evals import plots

    path = stem.with_name(stem.name + "_lifetimes.png")
    return [plots.survival(result.survival, result.survival_shuffled, result.lifetime_histogram, path)]


class _Scorer:
    def __init__(self, ctx: EvalContext, cfg: FeatureLifetimesConfig) -> None:
        from tsae_evals.evals.feature_lifetimes.stream import LifetimeScorer

        self.n_windows = cfg.n_windows
        self.start = ctx.scored_start(cfg.skip_first_positions)
        self.inner = LifetimeScorer(ctx.sae.cfg.d_sae, cfg, ctx.seed)

    def add(self, batch: EncodedBatch) -> None:
        self.inner.add(batch.latents[:, self.start :])

    def finish(self) -> FeatureLifetimesResult:
        return self.inner.finish()


@register_streaming_eval("feature_lifetimes", version=1, config=FeatureLifetimesConfig, group="temporal", plots=_plots)
def feature_lifetimes(ctx: EvalContext, cfg: FeatureLifetimesConfig) -> _Scorer:
    """Run lengths, survival, persistence ratio and burstiness of latents, each against a shuffle null."""
    return _Scorer(ctx, cfg)
