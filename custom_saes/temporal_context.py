"""Temporal context SAE: a ReLU SAE whose encoder also reads a buffer of the previous `context_window` inputs.

The buffer holds low-dimensional projections of x_{t-1..t-w}, each plus a learned embedding of its offset; their
mean is matched against learned temporal patterns (softmax over pattern similarities), and the match adds a
per-latent bias: the context can pre-activate latents it predicts. Causal; position t never sees t+1.
Flattened `[tokens, d_in]` input is read as tokens each alone (no context).

Three intervention strategies for unlearning-style use (`intervene`):
- `clamp`: set the chosen latents to `value` where they are active (SAE-Bench's unlearning clamp);
- `pattern`: set them where the temporal context drives them (pattern bias > 0), active or not;
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


class TemporalContextSAE(TsaeSAE[TemporalContextSAEConfig]):
    sequence_aware = True
    flat_input: ClassVar[FlatInput] = "each_token_alone"
    b_enc: nn.Parameter

    def initialize_parameters(self) -> None:
        cfg = self.cfg
        add_linear_sae_parameters(self, cfg.d_in, cfg.d_sae)
        kwargs = {"dtype": self.dtype, "device": self.device}
        self.W_context = nn.Parameter(torch.randn(cfg.d_in, cfg.context_dim, **kwargs) / math.sqrt(cfg.d_in))
        self.offset_embedding = nn.Parameter(torch.randn(cfg.context_window, cfg.context_dim, **kwargs) * 0.02)
        self.patterns = nn.Parameter(
            torch.randn(cfg.n_patterns, cfg.context_dim, **kwargs) / math.sqrt(cfg.context_dim)
        )
        # Zero: an untrained context changes nothing, so training starts from a plain SAE.
        self.W_pattern = nn.Parameter(torch.zeros(cfg.n_patterns, cfg.d_sae, **kwargs))

    def context_drive(self, scaled: torch.Tensor) -> torch.Tensor:
        """Per-latent bias `[batch, seq, d_sae]` from the previous `context_window` positions."""
        projected = scaled @ self.W_context
        batch, seq, width = projected.shape
        total = torch.zeros_like(projected)
        count = torch.zeros(seq, 1, dtype=projected.dtype, device=projected.device)
        for offset in range(1, self.cfg.context_window + 1):
            if offset >= seq:
                break
            total[:, offset:] += projected[:, :-offset] + self.offset_embedding[offset - 1]
            count[offset:] += 1
        context = total / count.clamp_min(1)
        match = torch.softmax(context @ self.patterns.T / math.sqrt(width), dim=-1)
        return match @ self.W_pattern

    def _encode_sequences(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = self.scale_input(sequences)
        drive = self.context_drive(scaled)
        pre = self.hook_sae_acts_pre(scaled @ self.W_enc + self.b_enc + drive)
        return self.hook_sae_acts_post(torch.relu(pre)), drive

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
        feature_acts, _ = self._encode_sequences(x)
        reconstruction = self.decode(feature_acts)
        losses = {
            "mse": masked_mean(squared_error(x, reconstruction, self.activation_scale), mask),
            "l1": coefficients["l1"] * masked_mean(feature_acts.sum(-1), mask),
        }
        return TrainingOutput(
            losses, feature_acts, reconstruction, {"drive": float(self.W_pattern.detach().abs().mean())}
        )


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
