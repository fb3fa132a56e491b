"""Lifecycle: births and deaths of latents per window position, and their turnover against the shuffle null."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.evals.lifecycle.config import LifecycleConfig
from tsae_evals.evals.lifecycle.result import LifecycleResult
from tsae_evals.registry import register_streaming_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape, ScoredPositionsScorer


def _plots(ctx: EvalContext, cfg: LifecycleConfig, result: LifecycleResult, stem: Path) -> list[Path]:
    from tsae_evals.evals.lifecycle.plot import births_and_deaths

    return [births_and_deaths(result, stem.with_name(stem.name + "_lifecycle.png"), ctx.sae_ref.label)]


def _check(shape: RunShape, cfg: LifecycleConfig) -> None:
    shape.scored_start(cfg.skip_first_positions)


@register_streaming_eval("lifecycle", version=1, config=LifecycleConfig, group="analysis", plots=_plots, check=_check)
def lifecycle(ctx: EvalContext, cfg: LifecycleConfig) -> ScoredPositionsScorer:
    """Births and deaths of latents per position, and turnover per active latent against the shuffle null."""
    from tsae_evals.context import ScoredPositionsScorer
    from tsae_evals.evals.lifecycle.stream import LifecycleScorer

    start = ctx.scored_start(cfg.skip_first_positions)
    inner = LifecycleScorer(cfg, ctx.seed, start)
    return ScoredPositionsScorer(cfg.n_windows, start, lambda batch: inner.add(batch.latents), inner.finish)
