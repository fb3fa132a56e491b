"""Causal interventions: edit chosen latents over a span of positions and follow the effect downstream.

The edit is made in latent space and spliced back with the SAE's error term kept:
x' = x + decode(f') - decode(f), so only the edited latents' contribution changes. The model runs from the hook
on; the change of next-token loss at and after the span says how long the edit matters to the model. The edited
input is also re-encoded: a per-token SAE's later latents cannot change, a sequence-aware SAE's can.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tsae_evals.errors import UsageError
from tsae_evals.evals.causal_interventions.config import CausalInterventionsConfig
from tsae_evals.evals.causal_interventions.result import (
    CausalInterventionsMetrics,
    CausalInterventionsResult,
    LatentEffectMetrics,
    LossEffectMetrics,
    OffsetRow,
)
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext, RunShape


def check(shape: RunShape, cfg: CausalInterventionsConfig) -> None:
    last = shape.first_text_position + cfg.start + cfg.span - 1 + cfg.max_offset
    if last >= shape.context_size - 1:  # the loss at position t predicts t + 1
        raise UsageError(
            f"start {cfg.start} + span {cfg.span} + max_offset {cfg.max_offset} runs past the window "
            f"({shape.context_size} tokens)",
            "lower causal_interventions.start/span/max_offset or raise --context-size",
        )


@register_eval("causal_interventions", version=1, config=CausalInterventionsConfig, group="temporal", check=check)
def causal_interventions(ctx: EvalContext, cfg: CausalInterventionsConfig) -> CausalInterventionsResult:
    """Ablate or clamp the most active latents over a span; how long do loss and later latents feel it?"""
    import torch

    first = ctx.windows.first_text_position
    check(ctx.run_shape, cfg)
    begin, end = first + cfg.start, first + cfg.start + cfg.span  # absolute positions [begin, end)
    last = end - 1 + cfg.max_offset
    tokens = ctx.windows.tokens[: cfg.n_windows].to(ctx.device)
    generator = torch.Generator().manual_seed(ctx.seed)
    # Running sums over windows, by position: memory stays fixed however many windows are read.
    loss_effect = control_effect = latent_effect = None
    chosen_all: list[list[int]] = []
    for batch in tokens.split(ctx.batch_size):
        x = ctx.hook_activations(batch)
        with torch.no_grad():
            latents = ctx.sae.encode(x)
            edited, chosen = _edit(latents, begin, end, cfg)
            delta = ctx.sae.decode(edited) - ctx.sae.decode(latents)
            control = _random_like(delta, generator)
            clean = _loss(ctx, batch, None)
            sums = (
                (_loss(ctx, batch, x + delta) - clean).abs().sum(0),
                (_loss(ctx, batch, x + control) - clean).abs().sum(0),
                (ctx.sae.encode(x + delta) - latents).abs().sum(-1).sum(0),
            )
        if loss_effect is None or control_effect is None or latent_effect is None:
            loss_effect, control_effect, latent_effect = sums
        else:
            loss_effect, control_effect, latent_effect = (
                loss_effect + sums[0],
                control_effect + sums[1],
                latent_effect + sums[2],
            )
        chosen_all += chosen
    assert loss_effect is not None and control_effect is not None and latent_effect is not None
    n = len(chosen_all)
    loss, control_loss, latent_change = loss_effect / n, control_effect / n, latent_effect / n  # by position
    offsets = range(cfg.max_offset + 1)
    curve = [
        OffsetRow(
            offset=d,
            mean_abs_delta_loss=float(loss[end - 1 + d]),
            control_mean_abs_delta_loss=float(control_loss[end - 1 + d]),
            mean_abs_delta_latents=float(latent_change[end - 1 + d]),
        )
        for d in offsets
    ]
    after = slice(end, last + 1)
    loss_after, control_after = float(loss[after].mean()), float(control_loss[after].mean())
    metrics = CausalInterventionsMetrics(
        loss=LossEffectMetrics(
            mean_abs_delta_loss_in_span=float(loss[begin:end].mean()),
            mean_abs_delta_loss_after=loss_after,
            persistence_tokens=persistence([row.mean_abs_delta_loss for row in curve], cfg.persistence_fraction),
            control_mean_abs_delta_loss_after=control_after,
            effect_over_control=loss_after / control_after if control_after else float("nan"),
        ),
        latents=LatentEffectMetrics(
            mean_abs_delta_latents_after=float(latent_change[after].mean()),
            # Offset 0 is an edited position itself: only offsets >= 1 say anything about persistence.
            persistence_tokens=persistence(
                [0.0] + [row.mean_abs_delta_latents for row in curve[1:]], cfg.persistence_fraction
            ),
        ),
    )
    return CausalInterventionsResult(metrics=metrics, curve=curve, intervened_latents=chosen_all)


def persistence(curve: list[float], fraction: float) -> int:
    """Last index (offset) whose value is at least `fraction` of the curve's peak; 0 for an all-zero curve."""
    peak = max(curve, default=0.0)
    if peak <= 0:
        return 0
    return max(i for i, value in enumerate(curve) if value >= fraction * peak)


def _edit(
    latents: torch.Tensor, begin: int, end: int, cfg: CausalInterventionsConfig
) -> tuple[torch.Tensor, list[list[int]]]:
    """Latents with the `n_latents` most active over the span set to 0 (ablate) or to a multiple of their
    window maximum (clamp) at positions begin..end-1; also returns which latents, per window."""
    import torch

    edited = latents.clone()
    strength = latents[:, begin:end].sum(1)  # [b, d_sae]
    chosen = strength.topk(cfg.n_latents, dim=-1).indices
    rows = torch.arange(latents.shape[0], device=latents.device)[:, None]
    if cfg.mode == "ablate":
        value = torch.zeros_like(strength.gather(1, chosen))
    else:
        value = cfg.clamp_multiplier * latents.amax(1).gather(1, chosen)
    span = edited[:, begin:end]
    span[rows, :, chosen] = value[:, :, None].expand(-1, -1, end - begin)  # indexed shape: [b, k, span]
    return edited, chosen.tolist()


def _random_like(delta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random directions with the same per-position norms as `delta` (zero where delta is zero)."""
    import torch

    noise = torch.randn(delta.shape, generator=generator, dtype=delta.dtype).to(delta.device)
    norms = delta.norm(dim=-1, keepdim=True)
    return noise / noise.norm(dim=-1, keepdim=True).clamp_min(1e-12) * norms


def _loss(ctx: EvalContext, tokens: torch.Tensor, replacement: torch.Tensor | None) -> torch.Tensor:
    """Per-token next-token loss `[b, seq - 1]`, with the hook's activations replaced when given."""
    hooks: list[tuple[str, Any]] = []
    if replacement is not None:

        def replace(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            return replacement.reshape(activation.shape).to(activation.dtype)

        hooks = [(ctx.hook_name, replace)]
    return ctx.model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
