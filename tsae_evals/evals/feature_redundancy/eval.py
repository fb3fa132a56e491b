"""Feature redundancy: how correlated an SAE's latents are across tokens and how alike their decoder directions
are, each against a null where every latent's tokens are offset independently and a chance value."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.evals.feature_redundancy.config import FeatureRedundancyConfig
from tsae_evals.evals.feature_redundancy.result import FeatureRedundancyResult
from tsae_evals.registry import register_streaming_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape, ScoredPositionsScorer


def _plots(ctx: EvalContext, cfg: FeatureRedundancyConfig, result: FeatureRedundancyResult, stem: Path) -> list[Path]:
    from tsae_evals.evals.feature_redundancy.plot import correlation_heatmap

    return [correlation_heatmap(result, stem.with_name(stem.name + "_correlation.png"), ctx.sae_ref.label)]


def _check(shape: RunShape, cfg: FeatureRedundancyConfig) -> None:
    shape.scored_start(cfg.skip_first_positions)


@register_streaming_eval(
    "feature_redundancy", version=1, config=FeatureRedundancyConfig, group="analysis", plots=_plots, check=_check
)
def feature_redundancy(ctx: EvalContext, cfg: FeatureRedundancyConfig) -> ScoredPositionsScorer:
    """Pearson correlation between latents across tokens and decoder cosines, against a roll null and chance."""
    from tsae_evals.context import ScoredPositionsScorer
    from tsae_evals.evals.feature_redundancy.stream import RedundancyScorer

    decoder = getattr(ctx.sae, "W_dec", None)
    inner = RedundancyScorer(ctx.sae.cfg.d_sae, cfg, ctx.seed, decoder)
    start = ctx.scored_start(cfg.skip_first_positions)
    return ScoredPositionsScorer(cfg.n_windows, start, lambda batch: inner.add(batch.latents), inner.finish)
