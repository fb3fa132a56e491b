"""Position invariance: how much of each latent's variance lies between chunks of w positions rather than within
them (the quantity the temporal consistency SAE trains for), against a within-window shuffle and its chance value."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.errors import UsageError
from tsae_evals.evals.position_invariance.config import PositionInvarianceConfig
from tsae_evals.evals.position_invariance.result import PositionInvarianceResult
from tsae_evals.registry import register_streaming_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape, ScoredPositionsScorer


def _plots(ctx: EvalContext, cfg: PositionInvarianceConfig, result: PositionInvarianceResult, stem: Path) -> list[Path]:
    from tsae_evals.evals.position_invariance.plot import invariance_histogram

    return [invariance_histogram(result, stem.with_name(stem.name + "_invariance.png"))]


def _check(shape: RunShape, cfg: PositionInvarianceConfig) -> None:
    scored = shape.context_size - shape.scored_start(cfg.skip_first_positions)
    largest = max(cfg.chunk_sizes)
    if scored < 2 * largest:
        raise UsageError(
            f"position_invariance needs two chunks of {largest} positions per window; windows have {scored} scored",
            "raise --context-size or lower position_invariance.chunk_size / second_chunk_size",
        )


@register_streaming_eval(
    "position_invariance", version=1, config=PositionInvarianceConfig, group="analysis", plots=_plots, check=_check
)
def position_invariance(ctx: EvalContext, cfg: PositionInvarianceConfig) -> ScoredPositionsScorer:
    """Per-latent share of variance between chunks of w=8 (and 16) positions, against a within-window shuffle."""
    from tsae_evals.context import ScoredPositionsScorer
    from tsae_evals.evals.position_invariance.stream import InvarianceScorer

    _check(ctx.run_shape, cfg)
    inner = InvarianceScorer(ctx.sae.cfg.d_sae, cfg, ctx.seed)
    start = ctx.scored_start(cfg.skip_first_positions)
    return ScoredPositionsScorer(cfg.n_windows, start, lambda batch: inner.add(batch.latents), inner.finish)
