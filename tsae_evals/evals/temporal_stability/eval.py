"""Temporal stability: do an SAE's latents persist across adjacent tokens more than chance order would give?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.evals.temporal_stability.config import TemporalStabilityConfig
from tsae_evals.evals.temporal_stability.result import TemporalStabilityResult
from tsae_evals.registry import register_streaming_eval

if TYPE_CHECKING:
    from tsae_evals.context import EncodedBatch, EvalContext


def _plots(ctx: EvalContext, cfg: TemporalStabilityConfig, result: TemporalStabilityResult, stem: Path) -> list[Path]:
    from tsae_evals import plots

    return [
        plots.feature_evolution(ctx, stem.with_name(stem.name + "_feature_evolution.png")),
        plots.transitions(ctx, stem.with_name(stem.name + "_transitions.png")),
    ]


class _Scorer:
    def __init__(self, ctx: EvalContext, cfg: TemporalStabilityConfig) -> None:
        from tsae_evals.evals.temporal_stability.stream import StabilityScorer

        self.n_windows = cfg.n_windows
        self.start = ctx.scored_start(cfg.skip_first_positions)
        self.inner = StabilityScorer(ctx.sae.cfg.d_sae, cfg, ctx.seed)

    def add(self, batch: EncodedBatch) -> None:
        start = self.start
        self.inner.add(batch.latents[:, start:], batch.activations[:, start:], batch.reconstruction[:, start:])

    def finish(self) -> TemporalStabilityResult:
        return self.inner.finish()


@register_streaming_eval(
    "temporal_stability", version=1, config=TemporalStabilityConfig, group="temporal", plots=_plots
)
def temporal_stability(ctx: EvalContext, cfg: TemporalStabilityConfig) -> _Scorer:
    """Adjacent Jaccard, successive cosine and lag-k autocorrelation of latents, each against a shuffle null."""
    return _Scorer(ctx, cfg)
