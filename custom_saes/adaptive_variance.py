"""Adaptive variance SAE: pre-activations without an encoder bias, divided by an in-context running standard
deviation raised to the temperature, then a learned global affine threshold.

    z_t     = W_enc^T (x_t - b_dec)                                   (no per-latent encoder bias)
    v_0     = v_global                                                (per-latent running mean of z^2, a buffer)
    v_t     = rho v_{t-1} + (1 - rho) min(z_{t-1}^2, clip v_global)   (causal: positions < t of the same sequence)
    f_t     = ReLU(beta z_t / sqrt(v_t)^temperature - theta)          (beta, theta: two global scalars)

beta and theta replace the per-latent encoder bias, so every latent shares one threshold in units of its own
(context-dependent) standard deviation; the ablation `per_feature_params` gives each latent its own (beta, theta),
a different model. The normaliser depends on the earlier tokens of the sequence, so at inference this is not a
ReLU SAE with rescaled weights; the ablation `temporal_adaptation=False` uses v_global at every position. A small
penalty keeps (beta, theta) near (1, 0) so they cannot absorb the sparsity penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field
from sae_lens import register_sae_class
from torch import nn

from custom_saes.base import (
    ENCODER_INIT_SCALE,
    FlatInput,
    TrainingOutput,
    TsaeConfig,
    TsaeSAE,
    as_sequences,
    kaiming_decoder,
    masked_mean,
    squared_error,
)
from custom_saes.training.registry import TrainingJob, register_training_architecture

ARCHITECTURE = "tsae_adaptive_variance"
DEFAULT_L1 = 2.0
"""Default --l1: unit-variance latents need less than PHASED_L1. SmolLM2 layer 6, 100k tokens: L1 3 gave L0 68 and
EV 0.55, L1 2 gave L0 125 and EV 0.73, L1 1.5 gave L0 163 and EV 0.79."""
VARIANCE_EPS = 1e-6
"""Added to every variance before it is raised to a power."""


@dataclass
class AdaptiveVarianceSAEConfig(TsaeConfig):
    """Variance normalisation, its temporal adaptation and the ablation switches."""

    per_feature_params: bool = False
    """Ablation: one (beta, theta) per latent instead of two global scalars."""
    temperature: float = 1.0
    """Pre-activations are divided by std^temperature: higher temperature = stronger normalisation (1: unit
    variance, 0: no normalisation)."""
    temporal_adaptation: bool = True
    """The std comes from a causal moving average over earlier tokens of the sequence; False: the global running
    std at every position (ablation; the class still declares itself sequence-aware)."""
    variance_decay: float = 0.9
    """rho of the in-context moving average of z^2 (memory of about 1 / (1 - rho) tokens)."""
    variance_clip: float = 10.0
    """Each token adds at most this multiple of the global variance to the in-context average (BOS rows are huge)."""
    variance_momentum: float = 0.9
    """Exponential moving average factor of the global running mean of z^2 (updated in training only; the first
    training batch sets it before its forward)."""

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class Encoding(NamedTuple):
    """Latents of `[batch, seq]` sequences and the quantities that produced them."""

    feature_acts: torch.Tensor
    """`[batch, seq, d_sae]` latents."""
    pre: torch.Tensor
    """`[batch, seq, d_sae]` raw pre-activations z = W_enc^T (x - b_dec)."""
    variance: torch.Tensor
    """`[batch, seq, d_sae]` the variance each pre-activation was normalised by."""


class AdaptiveVarianceSAE(TsaeSAE[AdaptiveVarianceSAEConfig]):
    sequence_aware = True
    flat_input: ClassVar[FlatInput] = "each_token_alone"
    mechanism = (
        "mean over tokens and latents of |normaliser with in-context variance / normaliser with global variance - 1|"
    )

    beta: nn.Parameter
    theta: nn.Parameter
    running_variance: torch.Tensor

    def initialize_parameters(self) -> None:
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        decoder = kaiming_decoder(d_sae, d_in, self.dtype, self.device)
        self.W_dec = nn.Parameter(decoder)
        self.W_enc = nn.Parameter(ENCODER_INIT_SCALE * decoder.T.clone().contiguous())
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=self.dtype, device=self.device))
        shape = (d_sae,) if self.cfg.per_feature_params else ()
        self.beta = nn.Parameter(torch.ones(shape, dtype=self.dtype, device=self.device))
        self.theta = nn.Parameter(torch.zeros(shape, dtype=self.dtype, device=self.device))
        self.register_buffer("running_variance", torch.ones(d_sae, dtype=self.dtype, device=self.device))
        self._variance_seeded = False

    def context_variance(self, pre: torch.Tensor) -> torch.Tensor:
        """Per-position variance `[batch, seq, d_sae]` from the raw pre-activations: the global running mean of z^2
        at the first position, then a causal moving average of the earlier positions' (clipped) z^2."""
        global_variance = self.running_variance.to(pre.dtype)
        if not self.cfg.temporal_adaptation or pre.shape[1] == 1:
            return global_variance.expand_as(pre)
        rho = self.cfg.variance_decay
        seq = pre.shape[1]
        position = torch.arange(seq, device=pre.device, dtype=pre.dtype)
        lag = position[:, None] - position[None, :] - 1  # t - 1 - s
        earlier = lag >= 0
        weights = torch.where(earlier, (1 - rho) * rho ** lag.clamp_min(0), torch.zeros_like(lag))
        contributions = torch.minimum(pre.pow(2), self.cfg.variance_clip * global_variance)
        prior = (rho**position)[:, None] * global_variance  # [seq, d_sae]
        return prior + torch.einsum("ts,bsd->btd", weights, contributions)

    def encode_sequences(self, sequences: torch.Tensor) -> Encoding:
        """Encode `[batch, seq, d_in]`; position t reads positions <= t of its own sequence only."""
        pre = self.scale_input(sequences) @ self.W_enc
        variance = self.context_variance(pre)
        normalised = pre * (variance + VARIANCE_EPS).pow(-0.5 * self.cfg.temperature)
        hidden = self.hook_sae_acts_pre(self.beta * normalised - self.theta)
        return Encoding(self.hook_sae_acts_post(torch.relu(hidden)), pre, variance)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sequences, restore = as_sequences(x, self.flat_input)
        return restore(self.encode_sequences(sequences).feature_acts)

    @torch.no_grad()
    def update_running_variance(self, counted_pre: torch.Tensor) -> None:
        """Move the global running mean of z^2 towards that of `counted_pre [tokens, d_sae]`."""
        if counted_pre.shape[0] == 0:
            return
        batch_value = counted_pre.pow(2).mean(0).to(self.running_variance.dtype)
        if not self._variance_seeded:
            self.running_variance.copy_(batch_value)
            self._variance_seeded = True
            return
        momentum = self.cfg.variance_momentum
        self.running_variance.mul_(momentum).add_((1 - momentum) * batch_value)

    def global_parameter_penalty(self) -> torch.Tensor:
        return ((self.beta - 1).pow(2) + self.theta.pow(2)).mean()

    def adaptation_share(self, encoding: Encoding, mask: torch.Tensor) -> float:
        """Mean |(v_global / v_t)^(temperature / 2) - 1| over counted positions and latents."""
        with torch.no_grad():
            ratio = (self.running_variance + VARIANCE_EPS) / (encoding.variance[mask] + VARIANCE_EPS)
            return float((ratio.pow(0.5 * self.cfg.temperature) - 1).abs().mean())

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        sequences, _ = as_sequences(x, self.flat_input)
        if not self._variance_seeded:
            with torch.no_grad():
                self.update_running_variance(self.scale_input(sequences[mask]) @ self.W_enc)
        # Whole sequences are encoded (BOS included, as at inference); only counted positions enter the losses and
        # the global variance.
        encoding = self.encode_sequences(sequences)
        feature_acts = encoding.feature_acts
        reconstruction = self.decode(feature_acts)
        losses = {
            "mse": masked_mean(squared_error(sequences, reconstruction, self.activation_scale), mask),
            "l1": coefficients["l1"] * masked_mean(feature_acts.sum(-1), mask),
            "global_reg": coefficients["global_reg"] * self.global_parameter_penalty(),
        }
        metrics = {
            "beta": float(self.beta.detach().mean()),
            "theta": float(self.theta.detach().mean()),
            "mechanism_share": self.adaptation_share(encoding, mask),
        }
        self.update_running_variance(encoding.pre.detach()[mask])
        return TrainingOutput(losses, feature_acts, reconstruction, metrics)


class AdaptiveVarianceOptions(BaseModel):
    """Training settings of the adaptive variance SAE (set with --set name=value); L1 comes from --l1."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    per_feature_params: bool = False
    """Ablation: per-latent beta/theta instead of two global scalars."""
    temperature: float = Field(default=1.0, ge=0)
    """Divide pre-activations by std^temperature (higher = stronger normalisation; 1 = unit variance, 0 = none)."""
    temporal_adaptation: bool = True
    """Std from a causal moving average over earlier tokens; false: global running std only (ablation)."""
    variance_decay: float = Field(default=0.9, ge=0, lt=1)
    """Decay rho of the in-context moving average of z^2 (memory about 1/(1-rho) tokens)."""
    variance_clip: float = Field(default=10.0, gt=0)
    """Cap on one token's z^2 in the in-context average, as a multiple of the global variance."""
    global_reg_coefficient: float = Field(default=1.0, ge=0)
    """Weight of the penalty ((beta - 1)^2 + theta^2)."""


@register_training_architecture(ARCHITECTURE, options=AdaptiveVarianceOptions)
def train_adaptive_variance(job: TrainingJob, options: AdaptiveVarianceOptions) -> AdaptiveVarianceSAE:
    """Bias-free SAE normalised by an in-context running std, global (beta, theta); L1 (default 2) warms up over 10%."""
    from custom_saes.training.loop import l1_warmup_then_train

    sae = AdaptiveVarianceSAE(
        AdaptiveVarianceSAEConfig(
            d_in=job.d_in,
            d_sae=job.d_sae,
            per_feature_params=options.per_feature_params,
            temperature=options.temperature,
            temporal_adaptation=options.temporal_adaptation,
            variance_decay=options.variance_decay,
            variance_clip=options.variance_clip,
            metadata=job.metadata(),
        )
    )
    phases = l1_warmup_then_train(job.l1(DEFAULT_L1), global_reg=options.global_reg_coefficient)
    return job.train_phased(sae, phases)


register_sae_class(ARCHITECTURE, AdaptiveVarianceSAE, AdaptiveVarianceSAEConfig)
