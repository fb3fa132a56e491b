"""Feature lifetimes: how long latents stay on, against the independent-firing null; censoring handled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.errors import UsageError
from tsae_evals.evals.feature_lifetimes.config import FeatureLifetimesConfig
from tsae_evals.evals.feature_lifetimes.result import FeatureLifetimesResult
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext


def _plots(ctx: EvalContext, cfg: FeatureLifetimesConfig, result: FeatureLifetimesResult, stem: Path) -> list[Path]:
    from tsae_evals import plots

    path = stem.with_name(stem.name + "_lifetimes.png")
    return [plots.survival(result.survival, result.survival_shuffled, result.lifetime_histogram, path)]


@register_eval("feature_lifetimes", version=1, config=FeatureLifetimesConfig, group="temporal", plots=_plots)
def feature_lifetimes(ctx: EvalContext, cfg: FeatureLifetimesConfig) -> FeatureLifetimesResult:
    """Run lengths, survival, persistence ratio and burstiness of latents, each against a shuffle null."""
    from tsae_evals.evals.feature_lifetimes.stream import score_lifetimes

    return score_lifetimes(_encoded_batches(ctx, cfg), ctx.sae.cfg.d_sae, cfg, ctx.seed)


def _encoded_batches(ctx: EvalContext, cfg: FeatureLifetimesConfig) -> Iterator[torch.Tensor]:
    import torch

    start = ctx.windows.first_text_position + cfg.skip_first_positions
    if start >= ctx.windows.context_size - 2:
        raise UsageError(
            f"skip_first_positions={cfg.skip_first_positions} leaves fewer than 2 positions per window",
            "lower skip_first_positions or raise --context-size",
        )
    for _, activations in ctx.iter_activation_batches(cfg.n_windows):
        with torch.no_grad():
            # Sequence-aware SAEs see the whole window (BOS included) as context; only text positions are scored.
            yield ctx.sae.encode(activations)[:, start:]
