"""Temporal stability: do an SAE's latents persist across adjacent tokens more than chance order would give?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.evals.temporal_stability.config import TemporalStabilityConfig
from tsae_evals.evals.temporal_stability.result import TemporalStabilityResult
from tsae_evals.registry import register_streaming_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape, ScoredPositionsScorer


def _plots(ctx: EvalContext, cfg: TemporalStabilityConfig, result: TemporalStabilityResult, stem: Path) -> list[Path]:
    from tsae_evals import plots

    return [
        plots.feature_evolution(ctx, stem.with_name(stem.name + "_feature_evolution.png")),
        plots.transitions(ctx, stem.with_name(stem.name + "_transitions.png")),
    ]


def _check(shape: RunShape, cfg: TemporalStabilityConfig) -> None:
    shape.scored_start(cfg.skip_first_positions)


@register_streaming_eval(
    "temporal_stability", version=2, config=TemporalStabilityConfig, group="temporal", plots=_plots, check=_check
)
def temporal_stability(ctx: EvalContext, cfg: TemporalStabilityConfig) -> ScoredPositionsScorer:
    """Adjacent Jaccard, successive cosine, lag-k autocorrelation and T-SAE's smoothness of latents, each against
    a shuffle null and a random SAE."""
    from tsae_evals.context import ScoredPositionsScorer
    from tsae_evals.evals.temporal_stability.smoothness import RawUnits, matryoshka_split
    from tsae_evals.evals.temporal_stability.stream import StabilityScorer

    inner = StabilityScorer(ctx.sae.cfg.d_sae, cfg, ctx.seed, matryoshka_split(ctx.sae.cfg))
    start = ctx.scored_start(cfg.skip_first_positions)
    raw_units = RawUnits(ctx.sae)
    return ScoredPositionsScorer(
        cfg.n_windows,
        start,
        lambda batch: inner.add(batch.latents, batch.activations, batch.reconstruction, raw_units(batch.activations)),
        inner.finish,
    )
