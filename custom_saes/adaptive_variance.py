"""Adaptive variance SAE: each latent's pre-activation is divided by its running standard deviation raised to
1/temperature, then passed through a learned affine threshold f = ReLU(beta * z - theta).

beta and theta are global scalars shared by all latents (the idea under test) or, as an ablation, one per latent;
`temperature` = None turns the variance normalisation off (the second ablation). A small penalty keeps the global
parameters near (beta, theta) = (1, 0) so they cannot absorb the sparsity penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from sae_lens import register_sae_class
from torch import nn

from custom_saes.base import (
    TrainingOutput,
    TsaeConfig,
    TsaeSAE,
    add_linear_sae_parameters,
    as_sequences,
    masked_mean,
    squared_error,
)
from custom_saes.training.registry import PHASED_L1, TrainingJob, register_training_architecture

ARCHITECTURE = "tsae_adaptive_variance"


@dataclass
class AdaptiveVarianceSAEConfig(TsaeConfig):
    """Variance scaling and the two ablation switches."""

    per_feature_params: bool = False
    """Ablation: one (beta, theta) per latent instead of two global scalars."""
    temperature: float | None = 2.0
    """z = pre / std^(1/temperature); None disables variance normalisation (ablation)."""
    variance_momentum: float = 0.99
    """Exponential moving average factor of the running per-latent variance (training only)."""

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class AdaptiveVarianceSAE(TsaeSAE[AdaptiveVarianceSAEConfig]):
    b_enc: nn.Parameter
    beta: nn.Parameter
    theta: nn.Parameter
    running_variance: torch.Tensor

    def initialize_parameters(self) -> None:
        add_linear_sae_parameters(self, self.cfg.d_in, self.cfg.d_sae)
        shape = (self.cfg.d_sae,) if self.cfg.per_feature_params else ()
        self.beta = nn.Parameter(torch.ones(shape, dtype=self.dtype, device=self.device))
        self.theta = nn.Parameter(torch.zeros(shape, dtype=self.dtype, device=self.device))
        self.register_buffer("running_variance", torch.ones(self.cfg.d_sae, dtype=self.dtype, device=self.device))

    def variance_scale(self) -> torch.Tensor:
        """Per-latent factor multiplying the pre-activation: std^(-1/temperature), or 1 when disabled."""
        if self.cfg.temperature is None:
            return torch.ones_like(self.running_variance)
        return (self.running_variance + 1e-6).pow(-0.5 / self.cfg.temperature)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.scale_input(x) @ self.W_enc + self.b_enc
        if self.training:
            self._update_running_variance(pre)
        z = self.hook_sae_acts_pre(pre * self.variance_scale())
        return self.hook_sae_acts_post(torch.relu(self.beta * z - self.theta))

    @torch.no_grad()
    def _update_running_variance(self, pre: torch.Tensor) -> None:
        flat = pre.reshape(-1, pre.shape[-1])
        if flat.shape[0] < 2:
            return
        momentum = self.cfg.variance_momentum
        self.running_variance.mul_(momentum).add_((1 - momentum) * flat.var(dim=0))

    def global_parameter_penalty(self) -> torch.Tensor:
        return ((self.beta - 1).pow(2) + self.theta.pow(2)).mean()

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        sequences, _ = as_sequences(x, self.flat_input)
        # Only counted positions update the variance: BOS rows are outliers.
        counted = sequences[mask]
        feature_acts = sequences.new_zeros(*sequences.shape[:2], self.cfg.d_sae)
        feature_acts[mask] = self.encode(counted)
        reconstruction = self.decode(feature_acts)
        losses = {
            "mse": masked_mean(squared_error(sequences, reconstruction, self.activation_scale), mask),
            "l1": coefficients["l1"] * masked_mean(feature_acts.sum(-1), mask),
            "global_reg": coefficients["global_reg"] * self.global_parameter_penalty(),
        }
        metrics = {"beta": float(self.beta.detach().mean()), "theta": float(self.theta.detach().mean())}
        return TrainingOutput(losses, feature_acts, reconstruction, metrics)


class AdaptiveVarianceOptions(BaseModel):
    """Training settings of the adaptive variance SAE (set with --set name=value); L1 comes from --l1."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    per_feature_params: bool = False
    """Ablation: per-latent beta/theta instead of global scalars."""
    temperature: float | None = Field(default=2.0, gt=0)
    """Temperature of the variance normalisation; null disables it."""
    global_reg_coefficient: float = Field(default=1.0, ge=0)
    """Weight of the penalty ((beta - 1)^2 + theta^2)."""


@register_training_architecture(ARCHITECTURE, options=AdaptiveVarianceOptions)
def train_adaptive_variance(job: TrainingJob, options: AdaptiveVarianceOptions) -> AdaptiveVarianceSAE:
    """ReLU SAE with running-variance normalisation and learned global (beta, theta); L1 warms up over 10%."""
    from custom_saes.training.loop import l1_warmup_then_train

    sae = AdaptiveVarianceSAE(
        AdaptiveVarianceSAEConfig(
            d_in=job.d_in,
            d_sae=job.d_sae,
            per_feature_params=options.per_feature_params,
            temperature=options.temperature,
            metadata=job.metadata(),
        )
    )
    phases = l1_warmup_then_train(job.l1(PHASED_L1), global_reg=options.global_reg_coefficient)
    return job.train_phased(sae, phases)


register_sae_class(ARCHITECTURE, AdaptiveVarianceSAE, AdaptiveVarianceSAEConfig)
