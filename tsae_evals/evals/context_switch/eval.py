"""Context switch: splice two documents at a known position and ask whether the latents mark the boundary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsae_evals.errors import UsageError
from tsae_evals.evals.context_switch.config import ContextSwitchConfig
from tsae_evals.evals.context_switch.result import ContextSwitchResult, WindowRow
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext, RunShape


def boundary_range(shape: RunShape, cfg: ContextSwitchConfig) -> tuple[int, int]:
    """The range boundaries are drawn from, so that every window size fits on both sides of one; a UsageError
    when the windows are too few or too short."""
    w_max = max(cfg.window_sizes)
    low, high = shape.first_text_position + w_max, shape.context_size - w_max  # text positions t-w..t+w-1 exist
    if shape.n_windows // 2 < 2 or low > high:
        raise UsageError(
            f"context_switch needs at least 4 windows of more than {2 * w_max + shape.first_text_position} tokens "
            f"(have {shape.n_windows} of {shape.context_size})",
            "raise --n-windows or --context-size, or use smaller context_switch.window_sizes",
        )
    return low, high


@register_eval("context_switch", version=1, config=ContextSwitchConfig, group="temporal", check=boundary_range)
def context_switch(ctx: EvalContext, cfg: ContextSwitchConfig) -> ContextSwitchResult:
    """AUROC of b_t = 1 - cos(mean f before t, mean f after t) at spliced document boundaries, w in {1,4,16}."""
    import torch

    from tsae_evals.evals.context_switch.score import StreamingAUROC, boundary_scores

    spliced, boundaries, boundary_range = splice_windows(ctx, cfg)
    sae_auroc = {w: StreamingAUROC(cfg.histogram_bins) for w in cfg.window_sizes}
    input_auroc = {w: StreamingAUROC(cfg.histogram_bins) for w in cfg.window_sizes}
    counts = dict.fromkeys(cfg.window_sizes, (0, 0))
    first = ctx.windows.first_text_position
    for start in range(0, spliced.shape[0], ctx.batch_size):
        tokens = spliced[start : start + ctx.batch_size]
        activations = ctx.hook_activations(tokens)
        with torch.no_grad():
            latents = ctx.sae.encode(activations)
        text_latents, text_inputs = latents[:, first:], activations[:, first:]
        boundary = boundaries[start : start + ctx.batch_size] - first
        for w in cfg.window_sizes:
            scores, offset = boundary_scores(text_latents, w)
            input_scores, _ = boundary_scores(text_inputs, w)
            labels = (torch.arange(scores.shape[1])[None, :] + offset) == boundary[:, None]
            sae_auroc[w].add(scores, labels)
            input_auroc[w].add(input_scores, labels)
            positives, negatives = counts[w]
            counts[w] = (positives + int(labels.sum()), negatives + int((~labels).sum()))
    rows = [
        WindowRow(
            window=w,
            auroc=sae_auroc[w].auroc(),
            input_auroc=input_auroc[w].auroc(),
            mean_boundary_score=sae_auroc[w].positive_sum / max(1, counts[w][0]),
            mean_other_score=sae_auroc[w].negative_sum / max(1, counts[w][1]),
            n_boundaries=counts[w][0],
            n_other=counts[w][1],
        )
        for w in cfg.window_sizes
    ]
    return ContextSwitchResult(rows=rows, n_sequences=int(spliced.shape[0]), boundary_range=boundary_range)


def splice_windows(ctx: EvalContext, cfg: ContextSwitchConfig) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Window i's prefix joined to the text of window i + n/2 (always another document: a document gives at most
    two consecutive windows) at a seeded boundary position; the total length stays context_size."""
    import torch

    windows = ctx.windows
    first, length = windows.first_text_position, windows.context_size
    low, high = boundary_range(ctx.run_shape, cfg)
    half = windows.n_windows // 2
    n = min(half, cfg.n_sequences or half)
    generator = torch.Generator().manual_seed(ctx.seed)
    boundaries = torch.randint(low, high + 1, (n,), generator=generator)
    spliced = windows.tokens[:n].clone()
    for i in range(n):
        b = int(boundaries[i])
        spliced[i, b:] = windows.tokens[half + i, first : first + length - b]
    return spliced, boundaries, (low, high)
