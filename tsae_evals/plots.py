"""Pictures of latents over time: drawn from data the evals already computed, written as PNG beside the JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def feature_evolution(ctx: EvalContext, path: Path, n_latents: int = 24, n_positions: int = 64) -> Path:
    """Heatmap of the most active latents (rows) over the first window's positions (columns, tokens on the axis)."""
    import torch

    tokens = ctx.windows.tokens[:1]
    with torch.no_grad():
        latents = ctx.sae.encode(ctx.hook_activations(tokens))[0]
    first = ctx.windows.first_text_position
    shown = latents[first : first + n_positions].float().cpu()
    top = shown.sum(0).argsort(descending=True)[:n_latents]
    labels = [
        ctx.model.tokenizer.decode([int(t)]).replace("\n", "\\n")[:8] for t in tokens[0, first:][: shown.shape[0]]
    ]
    figure, axis = _figure(max(8, 0.18 * shown.shape[0]), 0.25 * len(top) + 1.5)
    image = axis.imshow(shown[:, top].T, aspect="auto", cmap="viridis", interpolation="nearest")
    axis.set_yticks(range(len(top)), [str(int(i)) for i in top], fontsize=6)
    axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    axis.set_ylabel("latent")
    axis.set_title(f"{ctx.sae_ref.label}: top latents over one window")
    figure.colorbar(image, ax=axis, fraction=0.02)
    return _save(figure, path)


def transition_lift(active: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Lift of 'j is born at t+1 given i active at t' over j's birth rate, for `latents` x `latents`;
    `active [b, t, d_sae]` bool. 1 is independence; NaN where i never fires or j is never born."""
    import torch

    chosen = active[..., latents].float()
    now, later = chosen[:, :-1], chosen[:, 1:]
    born = later * (1 - now)
    joint = torch.einsum("bti,btj->ij", now, born)
    pairs = now.shape[0] * now.shape[1]
    rate_i, birth_j = now.sum((0, 1)) / pairs, born.sum((0, 1)) / pairs
    return joint / pairs / (rate_i[:, None] * birth_j[None, :])


def transitions(ctx: EvalContext, path: Path, n_windows: int = 16, n_latents: int = 20) -> Path:
    """Which latents tend to switch on right after which: log2 lift over chance among frequent non-dense latents."""
    import torch

    batches = []
    with torch.no_grad():
        for _, activations in ctx.iter_activation_batches(min(n_windows, ctx.windows.n_windows)):
            batches.append(ctx.sae.encode(activations)[:, ctx.windows.first_text_position :] > 0)
    active = torch.cat(batches).cpu()
    rate = active.float().mean((0, 1))
    candidates = torch.where(rate <= 0.1, rate, torch.zeros_like(rate))
    top = candidates.argsort(descending=True)[:n_latents]
    lift = transition_lift(active, top).log2()
    figure, axis = _figure(7, 6)
    bound = float(lift[torch.isfinite(lift)].abs().max()) if torch.isfinite(lift).any() else 1.0
    image = axis.imshow(lift, cmap="RdBu_r", vmin=-bound, vmax=bound)
    names = [str(int(i)) for i in top]
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    axis.set_yticks(range(len(names)), names, fontsize=6)
    axis.set_xlabel("latent j born at t+1")
    axis.set_ylabel("latent i active at t")
    axis.set_title("log2 lift of transitions over chance")
    figure.colorbar(image, ax=axis, fraction=0.046)
    return _save(figure, path)


def survival(real: list[float], shuffled: list[float], histogram: list[int], path: Path) -> Path:
    """Kaplan-Meier survival of lifetimes (real and shuffle null, log scale) beside the lifetime histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    lengths = range(1, len(real) + 1)
    left.step(lengths, real, where="post", label="latents")
    left.step(lengths, shuffled, where="post", label="shuffle null", linestyle="--")
    left.set_yscale("log")
    left.set_xlabel("lifetime L (tokens)")
    left.set_ylabel("P(lifetime >= L)")
    left.legend()
    right.bar(range(1, len(histogram)), histogram[1:])
    right.set_yscale("log")
    right.set_xlabel("lifetime (tokens, uncensored runs)")
    right.set_ylabel("runs")
    return _save(figure, path)
