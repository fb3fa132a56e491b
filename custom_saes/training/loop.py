"""One small training loop for every phased `tsae_` recipe: phases freeze and train parameter groups, anneal
loss coefficients, and checkpoint at their ends; progress shows losses, L0 and explained variance."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from custom_saes.base import TsaeSAE
from custom_saes.errors import TrainingDiverged
from custom_saes.training.activations import ActivationSource


def constant(**coefficients: float) -> Callable[[float], dict[str, float]]:
    """Coefficients that do not change within a phase."""
    return lambda _progress: dict(coefficients)


def ramp(name: str, start: float, end: float, **fixed: float) -> Callable[[float], dict[str, float]]:
    """Coefficient `name` moves linearly from `start` to `end` over the phase (annealing); others fixed."""
    return lambda progress: {**fixed, name: start + (end - start) * progress}


def l1_warmup_then_train(l1: float, warmup_share: float = 0.1, **fixed: float) -> list[Phase]:
    """The one-stage recipe of the ReLU-family SAEs: L1 ramps from 0 to `l1` over `warmup_share` of the tokens,
    then stays; `fixed` coefficients hold throughout."""
    return [
        Phase("warmup", warmup_share, ramp("l1", 0.0, l1, **fixed)),
        Phase("train", 1 - warmup_share, constant(l1=l1, **fixed)),
    ]


@dataclass(frozen=True)
class Phase:
    """One stage of a curriculum."""

    name: str
    """Shown in the progress bar and used as the checkpoint's directory name."""
    share: float
    """Share of the training tokens spent in this phase; a recipe's shares sum to 1."""
    coefficients: Callable[[float], dict[str, float]]
    """Loss coefficients as a function of progress through the phase (0 to 1)."""
    groups: tuple[str, ...] = ("all",)
    """Names from `sae.trainable_groups()` trained in this phase; every other parameter is frozen."""
    lr_scale: float = 1.0
    """Multiplies the learning rate in this phase."""
    on_start: Callable[[Any], None] | None = None
    """Called with the SAE when the phase begins (e.g. to recompute feature groups)."""


@dataclass
class TrainingHistory:
    """What the loop saw, kept in the SAE's metadata."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    """One row per logged step: phase, step, tokens, loss terms, L0, explained variance."""


def train_in_phases(
    sae: TsaeSAE[Any],
    phases: list[Phase],
    data: ActivationSource,
    *,
    tokens: int,
    lr: float,
    batch_windows: int,
    seed: int,
    checkpoint_dir: Path | None = None,
    log_every: int = 10,
) -> TrainingHistory:
    """Train `sae` in place through `phases` on `tokens` training tokens drawn as whole windows."""
    if not math.isclose(sum(phase.share for phase in phases), 1.0, abs_tol=1e-6):
        raise ValueError(f"phase shares must sum to 1, got {[phase.share for phase in phases]}")
    groups = sae.trainable_groups()
    torch.manual_seed(seed)
    with torch.no_grad():
        sae.activation_scale.fill_(data.scale)
    sae.train()
    device = sae.W_dec.device
    stream = data.batches(min(batch_windows, data.n_windows), seed)
    tokens_per_step = min(batch_windows, data.n_windows) * data.tokens_per_window
    total_steps = max(len(phases), math.ceil(tokens / tokens_per_step))
    phase_steps = [max(1, round(phase.share * total_steps)) for phase in phases]
    history = TrainingHistory()
    bar = tqdm(total=sum(phase_steps) * tokens_per_step, desc="training", unit="tok", unit_scale=True)
    steps_done = 0
    try:
        for phase_index, (phase, steps) in enumerate(zip(phases, phase_steps, strict=True)):
            if phase.on_start is not None:
                phase.on_start(sae)
            trained = _select_parameters(sae, groups, phase)
            optimiser = torch.optim.Adam(trained, lr=lr * phase.lr_scale)
            warmup = max(1, steps // 20)
            for step in range(steps):
                for group in optimiser.param_groups:
                    group["lr"] = lr * phase.lr_scale * min(1.0, (step + 1) / warmup)
                x, mask = next(stream)
                x, mask = x.to(device), mask.to(device)
                out = sae.training_forward(x, mask, phase.coefficients(step / max(1, steps - 1)))
                loss = sum(out.losses.values(), torch.zeros((), device=device))
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"training diverged in phase {phase.name!r} at step {step} (loss {loss.item()})",
                        "lower --lr or the loss coefficients (--set)",
                    )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trained, 1.0)
                optimiser.step()
                sae.after_optimizer_step()
                steps_done += 1
                bar.update(tokens_per_step)
                if step % log_every == 0 or step == steps - 1:
                    row = _log_row(phase.name, steps_done, steps_done * tokens_per_step, x, mask, out)
                    history.rows.append(row)
                    shown = " ".join(f"{k}={v:.3g}" for k, v in row.items() if k not in {"phase", "step", "tokens"})
                    bar.set_description(f"{phase.name} {shown}")
            if checkpoint_dir is not None:
                sae.save_model(checkpoint_dir / f"{phase_index + 1}-{phase.name}")
    finally:
        bar.close()
        for parameter in sae.parameters():
            parameter.requires_grad_(True)
        sae.eval()
    return history


def _select_parameters(sae: TsaeSAE[Any], groups: dict[str, list[torch.nn.Parameter]], phase: Phase) -> list[Any]:
    unknown = [name for name in phase.groups if name not in groups]
    if unknown:
        raise ValueError(f"phase {phase.name!r} names unknown parameter groups {unknown}; known: {sorted(groups)}")
    trained = {id(p): p for name in phase.groups for p in groups[name]}
    for parameter in sae.parameters():
        parameter.requires_grad_(id(parameter) in trained)
    return list(trained.values())


def _log_row(phase: str, step: int, tokens: int, x: torch.Tensor, mask: torch.Tensor, out: Any) -> dict[str, Any]:
    with torch.no_grad():
        counted_x, counted_hat = x[mask], out.reconstruction[mask]
        variance = (counted_x - counted_x.mean(0)).pow(2).sum()
        explained = 1 - (counted_x - counted_hat).pow(2).sum() / variance
        l0 = (out.feature_acts[mask] > 0).float().sum(-1).mean()
    row: dict[str, Any] = {"phase": phase, "step": step, "tokens": tokens}
    row.update({name: round(float(value.detach()), 5) for name, value in out.losses.items()})
    row.update({"L0": round(float(l0), 2), "EV": round(float(explained), 4)})
    row.update({name: round(value, 5) for name, value in out.metrics.items()})
    return row
