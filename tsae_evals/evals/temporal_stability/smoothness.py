"""Activation smoothness as T-SAE's authors compute it, streamed.

Reference: Bhalla et al. 2025 (arXiv 2511.05541), public code AI4LIFE-GROUP/temporal-saes,
`lipschitz_cont` in `dictionary_learning/dictionary_learning/evaluation.py` (commit 8daecb2). Per window (their
evaluation feeds one BOS-free sequence at a time), for each latent i active at least once in the window:

    L_i = max over t >= 1 of |f_t,i - f_t-1,i| / ||x_t - x_t-1||_2      (the ratio inside the max)

averaged over those latents, then over windows. Lower is smoother. t runs over the scored positions, so the
first scored position only appears as t - 1 (it has no predecessor); no latent is excluded as dense. For a
Matryoshka split they also report the first group ("high-level", the T-SAE's contrastive 20%) and the rest
("low-level"), each over its own active latents.

Units. x is the hook activation as the model produced it (`EncodedBatch.activations`). Their dictionaries read
raw activations (`scale_biases` folds the training normalisation into the biases, so f is in raw units) and keep
unit-norm decoder rows, so f_i is also the length of latent i's contribution to the raw reconstruction. Ours
differ in both ways: custom_saes encode `s * x` and divide the reconstruction by s (`activation_scale`);
sae-lens folds its `expected_average_only_in` factor into W_enc and W_dec on save (f stays in normalised units,
and s is no longer recorded); sae-lens ReLU SAEs keep free decoder norms. So f_i is put in raw units as
f_i * ||d_i||, d_i being latent i's decoder row as it lands in the raw input space: ||W_dec_i|| / s (s per token
for sae-lens's run-time `constant_norm_rescale` and `layer_norm`; ||d_i|| = 1 / s when sae-lens rescales by the
decoder norm). For unit-norm decoders this is exactly f / s, the authors' number; for any SAE it does not depend
on how scale is split between encoder and decoder (the ratio is then ||Δ(f_i d_i)|| / ||Δx||, unitless).

Deliberate deviations from the reference, each where it would give NaN or inf:
- Adjacent positions with identical inputs (||x_t - x_t-1|| = 0: a repeated token at an early layer) give
  |Δf| / 0 there, inf or NaN, which poisons the window's and then the run's mean. Such pairs are skipped: the max
  runs over the other pairs of the window. A window whose pairs are all skipped, or where no latent is active
  (their mean over an empty set is NaN), does not count. The skipped pairs are counted and reported.
- "Active at least once" is read as f != 0 at some position; theirs is `f.sum(0) != 0`, the same for
  non-negative latents (every ReLU/TopK/JumpReLU SAE), and not fooled by signed latents that cancel.
- A Matryoshka split with more than two groups is read as first group vs all the rest (their code splits by
  `group_sizes` and, with exactly two groups as trained, reports group 0 and group 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


def matryoshka_split(cfg: Any) -> int | None:
    """Latents in the high-level part (the first Matryoshka group) of an SAE config, or None without a split.

    Reads, in order: `matryoshka_widths` (sae-lens's cumulative widths of the nested levels; the first level is
    the high-level part) and `n_high_level` (custom_saes' T-SAE config, from its `high_level_fraction`)."""
    widths = getattr(cfg, "matryoshka_widths", None)
    split = int(widths[0]) if widths else getattr(cfg, "n_high_level", None)
    d_sae = int(cfg.d_sae)
    if split is None or not 0 < int(split) < d_sae:
        return None
    return int(split)


def input_scale(sae: Any, inputs: torch.Tensor) -> torch.Tensor:
    """The factor s the SAE multiplies its raw input by before encoding (so f / s is in raw units): a scalar
    tensor, or `[b, t, 1]` for sae-lens's per-token normalisations. 1 when the SAE reads raw input."""
    scale = getattr(sae, "activation_scale", None)  # custom_saes.base.TsaeSAE
    if isinstance(scale, torch.Tensor):
        return scale.detach().to(inputs.device, torch.float32)
    mode = getattr(sae.cfg, "normalize_activations", "none")
    if mode == "constant_norm_rescale":  # x * sqrt(d_in) / ||x||
        return inputs.shape[-1] ** 0.5 / inputs.float().norm(dim=-1, keepdim=True)
    if mode == "layer_norm":  # (x - mean) / (std + 1e-5)
        return 1 / (inputs.float().std(dim=-1, keepdim=True) + 1e-5)
    # "none"; "expected_average_only_in" is folded into the weights on load or else not applied at run time
    return torch.ones((), device=inputs.device)


class RawUnits:
    """The factor that puts `sae.encode`'s latents in raw units: ||d_i|| per latent (see the module), `[d_sae]`,
    or `[b, t, d_sae]` when the SAE normalises each token."""

    def __init__(self, sae: Any) -> None:
        self.sae = sae
        decoder = getattr(sae, "W_dec", None)
        d_sae = int(sae.cfg.d_sae)
        if decoder is None or getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
            self.decoder_norms = torch.ones(d_sae)  # decode divides by the norms: unit rows in effect
        else:
            self.decoder_norms = decoder.detach().float().norm(dim=-1)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        self.decoder_norms = self.decoder_norms.to(inputs.device)
        return self.decoder_norms / input_scale(self.sae, inputs)


@dataclass
class WindowSmoothness:
    """Per-window smoothness of one batch, for each part of the dictionary."""

    means: dict[str, torch.Tensor]
    """Part name -> `[b]` mean over the window's active latents of each latent's largest ratio."""
    defined: dict[str, torch.Tensor]
    """Part name -> `[b]` bool: the window has an active latent in the part and a pair with distinct inputs."""
    identical_pairs: torch.Tensor
    """Adjacent pairs skipped because their inputs are identical (0-dim)."""


def window_smoothness(
    latents: torch.Tensor, inputs: torch.Tensor, units: torch.Tensor, parts: dict[str, slice]
) -> WindowSmoothness:
    """Smoothness of each window of `latents [b, t, d_sae]` against `inputs [b, t, d_in]` (see the module);
    `units` (RawUnits: scalar, `[d_sae]` or `[b, t, d_sae]`) multiplies the latents into raw units."""
    values = latents.float()
    if units.dim() == 3:  # per token: the latents in raw units first
        values = values * units
    # [b, t-1]; float64 on the CPU (the reference values), float32 elsewhere (float64 is slow on GPUs)
    wide = torch.float64 if inputs.device.type == "cpu" else torch.float32
    input_steps = torch.linalg.vector_norm(inputs[:, 1:].to(wide) - inputs[:, :-1].to(wide), dim=-1).double()
    distinct = input_steps > 0
    # Skipped pairs get ratio 0: ratios are >= 0, so they never win the max over a window's other pairs.
    inverse = torch.where(distinct, 1 / input_steps.clamp_min(1e-300), 0.0).float()
    largest = ((values[:, 1:] - values[:, :-1]).abs() * inverse[..., None]).amax(1)  # [b, d_sae]
    if units.dim() < 3:  # constant per latent: max_t (u |Δf| / ||Δx||) = u max_t (|Δf| / ||Δx||)
        largest = largest * units
    active = (latents != 0).any(1)  # [b, d_sae]; an inactive latent's largest ratio is 0
    has_pair = distinct.any(1)
    means, defined = {}, {}
    for name, part in parts.items():
        count = active[:, part].sum(-1)
        means[name] = largest[:, part].sum(-1, dtype=torch.float64) / count.clamp_min(1)
        defined[name] = (count > 0) & has_pair
    return WindowSmoothness(means, defined, (~distinct).sum())


@dataclass
class LipschitzSmoothness:
    """Running mean over windows of the per-window smoothness, for each part; state lives on the batches' device."""

    parts: dict[str, slice]
    totals: dict[str, torch.Tensor] = field(default_factory=dict)
    windows: dict[str, torch.Tensor] = field(default_factory=dict)
    identical_pairs: torch.Tensor | None = None

    def add(self, latents: torch.Tensor, inputs: torch.Tensor, units: torch.Tensor) -> None:
        scores = window_smoothness(latents, inputs, units, self.parts)
        for name in self.parts:
            total = torch.where(scores.defined[name], scores.means[name], 0.0).sum()
            count = scores.defined[name].sum()
            self.totals[name] = self.totals[name] + total if name in self.totals else total
            self.windows[name] = self.windows[name] + count if name in self.windows else count
        skipped = scores.identical_pairs
        self.identical_pairs = skipped if self.identical_pairs is None else self.identical_pairs + skipped

    def mean(self, name: str = "all") -> float:
        """Mean over the windows where part `name` is defined; NaN when none was."""
        count = int(self.windows[name]) if name in self.windows else 0
        return float(self.totals[name]) / count if count else float("nan")

    def part_mean(self, name: str) -> float | None:
        """`mean(name)`, or None when the dictionary has no such part (no Matryoshka split)."""
        return self.mean(name) if name in self.parts else None

    @property
    def n_identical_pairs(self) -> int:
        return 0 if self.identical_pairs is None else int(self.identical_pairs)


def smoothness_parts(d_sae: int, split: int | None) -> dict[str, slice]:
    """ "all" latents, plus "high_level" (the first `split`) and "low_level" (the rest) when there is a split."""
    parts = {"all": slice(0, d_sae)}
    if split is not None:
        parts |= {"high_level": slice(0, split), "low_level": slice(split, d_sae)}
    return parts
