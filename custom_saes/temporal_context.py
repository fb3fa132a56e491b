"""Temporal context SAE: a ReLU SAE whose encoder also reads a buffer of the previous `context_window` inputs.

Pre-activation at position t: token part `x_t W_enc + b_enc` plus a context drive from x_{t-1..t-w}, with two
order-aware terms (each offset has its own weights, so permuting the buffer changes the drive):
- persistence: `sum_k lag_gain[k] * (x_{t-k} W_enc)`, the token part of earlier positions, weighted per offset and
  per latent (starts at `LAG_GAIN_INIT` halving with each offset): latents active just before are pre-activated;
- patterns: the buffer's per-offset projections, concatenated (offset k in its own block), are matched against
  learned temporal patterns (softmax over cosine similarities at temperature `PATTERN_TEMPERATURE`), and the match
  adds a per-latent bias `match @ W_pattern`.
The context can thus pre-activate latents it predicts. Causal; position t never sees t+1 (positions before the
start of the sequence are zero). Flattened `[tokens, d_in]` input is read as tokens each alone (no context).

Three intervention strategies for unlearning-style use (`intervene`):
- `clamp`: set the chosen latents to `value` where they are active (SAE-Bench's unlearning clamp);
- `pattern`: set them where the temporal context drives them (context drive > 0), active or not;
- `hybrid`: where either holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from sae_lens import register_sae_class
from torch import nn

from custom_saes.base import (
    FlatInput,
    TrainingOutput,
    TsaeConfig,
    TsaeSAE,
    add_linear_sae_parameters,
    as_sequences,
    masked_mean,
    squared_error,
)
from custom_saes.training.registry import PHASED_L1, TrainingJob, register_training_architecture

ARCHITECTURE = "tsae_temporal_context"
InterventionStrategy = Literal["clamp", "pattern", "hybrid"]


@dataclass
class TemporalContextSAEConfig(TsaeConfig):
    """Context buffer and pattern bank sizes."""

    context_window: int = 4
    """Previous positions held in the context buffer."""
    context_dim: int = 64
    """Width of the projected context."""
    n_patterns: int = 32
    """Learned temporal patterns the context is matched against."""

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


@dataclass
class Intervention:
    """Result of `intervene`."""

    reconstruction: torch.Tensor
    """Decoded input with the chosen latents set to the value, same shape as x."""
    clamped: torch.Tensor
    """Bool `[..., n_latents]`: where each chosen latent was set."""


LAG_GAIN_INIT = 0.3
"""Persistence gain of offset 1 at initialisation (offset k starts at 0.3 / 2^(k-1)): the context's share of the
pre-activation starts near a quarter instead of zero, so the path is alive from the first step."""
LAG_LR_SCALE = 10.0
"""`lag_gain` is stored divided by this: Adam moves it this much faster than the other weights, so that a run of a
few hundred steps can still learn per latent how much the past should count (or switch it off)."""
PATTERN_TEMPERATURE = 0.1
"""Softmax temperature of the cosine pattern match; at sqrt(width) on raw dot products the match was uniform and
the pattern bias a constant."""


class TemporalContextSAE(TsaeSAE[TemporalContextSAEConfig]):
    sequence_aware = True
    flat_input: ClassVar[FlatInput] = "each_token_alone"
    mechanism: ClassVar[str] = (
        "context drive / pre-activation: mean |context drive| / (mean |x W_enc + b_enc| + mean |context drive|)"
    )
    b_enc: nn.Parameter

    def initialize_parameters(self) -> None:
        cfg = self.cfg
        add_linear_sae_parameters(self, cfg.d_in, cfg.d_sae)
        kwargs = {"dtype": self.dtype, "device": self.device}
        window, width = cfg.context_window, cfg.context_dim
        # One projection per offset: the buffer's blocks are concatenated, so order matters.
        self.W_context = nn.Parameter(torch.randn(window, cfg.d_in, width, **kwargs) / math.sqrt(cfg.d_in))
        self.patterns = nn.Parameter(torch.randn(cfg.n_patterns, window * width, **kwargs))
        # Small, not zero: with zero W_pattern the patterns and projections get no gradient at all.
        self.W_pattern = nn.Parameter(torch.randn(cfg.n_patterns, cfg.d_sae, **kwargs) * 0.02)
        gains = LAG_GAIN_INIT * 0.5 ** torch.arange(window, dtype=torch.float32)
        self.lag_gain = nn.Parameter(
            (gains[:, None] / LAG_LR_SCALE).expand(window, cfg.d_sae).to(**kwargs).contiguous()
        )

    def context_drive(self, scaled: torch.Tensor, token: torch.Tensor | None = None) -> torch.Tensor:
        """Per-latent bias `[batch, seq, d_sae]` from the previous `context_window` positions of `scaled` input;
        `token` is `scaled @ W_enc` when already computed."""
        if token is None:
            token = scaled @ self.W_enc
        window, width = self.cfg.context_window, self.cfg.context_dim
        seq = scaled.shape[1]
        projected = scaled @ self.W_context.permute(1, 0, 2).reshape(scaled.shape[-1], window * width)
        buffer = torch.zeros_like(projected)
        persistence = torch.zeros_like(token)
        gains = self.lag_gain * LAG_LR_SCALE
        for offset in range(1, min(window, seq - 1) + 1):
            block = slice((offset - 1) * width, offset * width)
            buffer[:, offset:, block] = projected[:, :-offset, block]
            persistence[:, offset:] += gains[offset - 1] * token[:, :-offset]
        similarity = (
            torch.nn.functional.normalize(buffer, dim=-1) @ torch.nn.functional.normalize(self.patterns, dim=-1).T
        )
        match = torch.softmax(similarity / PATTERN_TEMPERATURE, dim=-1)
        # An empty buffer (t = 0, or flattened input) matches every pattern equally: its bias is a constant.
        return persistence + match @ self.W_pattern

    def _encode_parts(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latents, token part `x W_enc + b_enc` and context drive of `[batch, seq, d_in]` input."""
        scaled = self.scale_input(sequences)
        token = scaled @ self.W_enc
        drive = self.context_drive(scaled, token)
        token = token + self.b_enc
        pre = self.hook_sae_acts_pre(token + drive)
        return self.hook_sae_acts_post(torch.relu(pre)), token, drive

    def _encode_sequences(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_acts, _token, drive = self._encode_parts(sequences)
        return feature_acts, drive

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sequences, restore = as_sequences(x, self.flat_input)
        return restore(self._encode_sequences(sequences)[0])

    @torch.no_grad()
    def intervene(
        self, x: torch.Tensor, latents: list[int], value: float, strategy: InterventionStrategy = "clamp"
    ) -> Intervention:
        """Reconstruct `x` with `latents` set to `value` at the positions the strategy selects."""
        sequences, restore = as_sequences(x, self.flat_input)
        feature_acts, drive = self._encode_sequences(sequences)
        index = torch.tensor(latents, dtype=torch.long, device=feature_acts.device)
        active = feature_acts[..., index] > 0
        driven = drive[..., index] > 0
        if strategy == "clamp":
            where = active
        elif strategy == "pattern":
            where = driven
        elif strategy == "hybrid":
            where = active | driven
        else:
            raise ValueError(f"unknown strategy {strategy!r}; use clamp, pattern or hybrid")
        chosen = feature_acts[..., index]
        feature_acts[..., index] = torch.where(where, torch.full_like(chosen, value), chosen)
        return Intervention(restore(self.decode(feature_acts)), where.reshape(*x.shape[:-1], len(latents)))

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        feature_acts, token, drive = self._encode_parts(x)
        reconstruction = self.decode(feature_acts)
        losses = {
            "mse": masked_mean(squared_error(x, reconstruction, self.activation_scale), mask),
            "l1": coefficients["l1"] * masked_mean(feature_acts.sum(-1), mask),
        }
        metrics = {
            "mechanism_share": mechanism_share(token.detach(), drive.detach(), mask),
            "lag_gain": float(self.lag_gain.detach().mean() * LAG_LR_SCALE),
        }
        return TrainingOutput(losses, feature_acts, reconstruction, metrics)


def mechanism_share(token: torch.Tensor, drive: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |context drive| / (mean |token part| + mean |context drive|) over the positions `mask` counts."""
    token_size = float(masked_mean(token.abs().mean(-1), mask))
    drive_size = float(masked_mean(drive.abs().mean(-1), mask))
    return drive_size / max(token_size + drive_size, 1e-12)


class TemporalContextOptions(BaseModel):
    """Training settings of the temporal context SAE (set with --set name=value); L1 comes from --l1."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")
    window_option: ClassVar[str] = "context_window"
    """The setting `ablate-window` sweeps."""

    context_window: int = Field(default=4, ge=1)
    """Previous positions in the context buffer."""
    context_dim: int = Field(default=64, ge=1)
    """Width of the projected context."""
    n_patterns: int = Field(default=32, ge=1)
    """Learned temporal patterns."""


@register_training_architecture(ARCHITECTURE, options=TemporalContextOptions)
def train_temporal_context(job: TrainingJob, options: TemporalContextOptions) -> TemporalContextSAE:
    """ReLU SAE + causal context buffer and pattern bank, trained jointly; L1 warms up over 10%."""
    from custom_saes.training.loop import l1_warmup_then_train

    sae = TemporalContextSAE(
        TemporalContextSAEConfig(
            d_in=job.d_in,
            d_sae=job.d_sae,
            context_window=options.context_window,
            context_dim=options.context_dim,
            n_patterns=options.n_patterns,
            metadata=job.metadata(),
        )
    )
    return job.train_phased(sae, l1_warmup_then_train(job.l1(PHASED_L1)))


register_sae_class(ARCHITECTURE, TemporalContextSAE, TemporalContextSAEConfig)
