"""Temporal stability: do an SAE's latents persist across adjacent tokens more than chance order would give?"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.errors import UsageError
from tsae_evals.evals.temporal_stability.config import TemporalStabilityConfig
from tsae_evals.evals.temporal_stability.result import TemporalStabilityResult
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext


def _plots(ctx: EvalContext, cfg: TemporalStabilityConfig, result: TemporalStabilityResult, stem: Path) -> list[Path]:
    from tsae_evals import plots

    return [
        plots.feature_evolution(ctx, stem.with_name(stem.name + "_feature_evolution.png")),
        plots.transitions(ctx, stem.with_name(stem.name + "_transitions.png")),
    ]


@register_eval("temporal_stability", version=1, config=TemporalStabilityConfig, group="temporal", plots=_plots)
def temporal_stability(ctx: EvalContext, cfg: TemporalStabilityConfig) -> TemporalStabilityResult:
    """Adjacent Jaccard, successive cosine and lag-k autocorrelation of latents, each against a shuffle null."""
    from tsae_evals.evals.temporal_stability.stream import score_stability

    return score_stability(_encoded_batches(ctx, cfg), ctx.sae.cfg.d_sae, cfg, ctx.seed)


def _encoded_batches(
    ctx: EvalContext, cfg: TemporalStabilityConfig
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    import torch

    start = ctx.windows.first_text_position + cfg.skip_first_positions
    if start >= ctx.windows.context_size - 2:
        raise UsageError(
            f"skip_first_positions={cfg.skip_first_positions} leaves fewer than 2 positions per window",
            "lower skip_first_positions or raise --context-size",
        )
    for _, activations in ctx.iter_activation_batches(cfg.n_windows):
        with torch.no_grad():
            # Sequence-aware SAEs read the whole window (BOS included) as context; only text positions are scored.
            latents = ctx.sae.encode(activations)
            reconstruction = ctx.sae.decode(latents)
        yield latents[:, start:], activations[:, start:], reconstruction[:, start:]
