"""The three intervention strategies as edits of the SAE's reconstruction, and the model's loss and accuracy with an
edit spliced in at the hook.

The splice is the SAE's reconstruction with the intervention plus the SAE's error term:
x' = decode(f') + (x - decode(f)) = x + (decode(f') - decode(f)). It is computed in the second form, so an edit
that changes no latent adds exactly zero and the model's output is bit-for-bit unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE

STRATEGIES = ("clamp", "pattern", "hybrid")
"""clamp: chosen latents set where they fire; pattern: where the SAE's temporal context drives them (drive > 0);
hybrid: where either holds. pattern and hybrid need an SAE with `intervene` (the temporal context SAE)."""


def has_intervene(sae: SAE[Any]) -> bool:
    return callable(getattr(sae, "intervene", None))


def available_strategies(sae: SAE[Any]) -> tuple[str, ...]:
    """Strategies this SAE supports: all three with an `intervene` method, else only the generic clamp."""
    return STRATEGIES if has_intervene(sae) else ("clamp",)


def clamp_latents(latents: torch.Tensor, chosen: list[int], value: float) -> torch.Tensor:
    """A copy of `latents [..., d_sae]` with the `chosen` latents set to `value` where they fire (> 0), unchanged
    elsewhere: SAE-Bench's unlearning clamp, for SAEs without their own `intervene`."""
    import torch

    edited = latents.clone()
    if chosen:
        index = torch.tensor(chosen, dtype=torch.long, device=latents.device)
        picked = edited[..., index]
        edited[..., index] = torch.where(picked > 0, torch.full_like(picked, value), picked)
    return edited


def reconstruction_change(
    sae: SAE[Any], x: torch.Tensor, chosen: list[int], value: float, strategy: str, first_text_position: int
) -> torch.Tensor:
    """decode(f') - decode(f) for whole windows `x [batch, seq, d_in]`: what the strategy adds to the hook's
    activations. Zero at the positions before `first_text_position` (BOS is never edited)."""
    import torch

    if strategy not in available_strategies(sae):
        raise ValueError(f"strategy {strategy!r} needs an SAE with an `intervene` method")
    with torch.no_grad():
        if not chosen:
            return torch.zeros_like(x)
        latents = sae.encode(x)
        clean = sae.decode(latents)
        if has_intervene(sae):
            edited = sae.intervene(x, chosen, value, strategy).reconstruction
        else:
            edited = sae.decode(clamp_latents(latents, chosen, value))
        change = edited - clean
        change[:, :first_text_position] = 0
        return change


@dataclass(frozen=True)
class WindowScores:
    """Per-window means over the scored predictions (those made at text positions, never at BOS)."""

    loss: torch.Tensor
    """[batch] mean next-token cross-entropy (nats)."""
    accuracy: torch.Tensor
    """[batch] fraction of next tokens that are the model's top-1 prediction."""


def score_windows(
    model: Any, tokens: torch.Tensor, hook_name: str, change: torch.Tensor | None, first_text_position: int
) -> WindowScores:
    """Run the model on `tokens [batch, seq]` with `change` added to the hook's activations (None: untouched)."""
    import torch

    hooks: list[tuple[str, Any]] = []
    if change is not None:

        def splice(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            return activation + change.reshape(activation.shape).to(activation.dtype)

        hooks = [(hook_name, splice)]
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=hooks)
        predicting = logits[:, first_text_position:-1].float()
        targets = tokens[:, first_text_position + 1 :].to(predicting.device)
        nll = -predicting.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        correct = (predicting.argmax(-1) == targets).float()
    return WindowScores(nll.mean(1).cpu(), correct.mean(1).cpu())
