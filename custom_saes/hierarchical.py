"""Hierarchical SAE: a dense lower level reads the input, a sparse upper level reads the lower level's code,
and both decode into the input space: x_hat = z_low D_low + z_up D_up + b_dec, latents = [z_low, z_up].

Curriculum: (1) lower pretraining on x ~ z_low D_low + b_dec; (2) upper training with the lower frozen, on the
residual the lower leaves; (3) joint fine-tuning on the multi-level loss |x - x_low|^2 + |x - x_hat|^2 with
progressive L1 (beta1 on the lower < beta2 on the upper) and an L2,1 group-sparsity penalty over groups of lower
latents whose decoder directions are cosine-similar (groups recomputed when phase 3 starts, stored in the SAE).

SAE-Bench reads `W_enc` as a linear encoder; for the upper level, which is not linear in x, it sees the linear
part W_low W_up (documented approximation; its reconstruction and sparsity metrics are exact).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sae_lens import register_sae_class
from torch import nn

from custom_saes.base import (
    ENCODER_INIT_SCALE,
    TrainingOutput,
    TsaeConfig,
    TsaeSAE,
    as_sequences,
    kaiming_decoder,
    masked_mean,
    squared_error,
)
from custom_saes.training.registry import TrainingJob, register_training_architecture

ARCHITECTURE = "tsae_hierarchical"


@dataclass
class HierarchicalSAEConfig(TsaeConfig):
    """Level sizes: d_sae = d_lower + upper width."""

    d_lower: int | None = None
    """Lower-level latents (the first d_lower of the d_sae; None: half); the rest are the upper level."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_lower is None:
            self.d_lower = self.d_sae // 2
        if not 0 < self.d_lower < self.d_sae:
            raise ValueError(f"d_lower must be in (0, d_sae={self.d_sae}), got {self.d_lower}")

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class HierarchicalSAE(TsaeSAE[HierarchicalSAEConfig]):
    lower_groups: torch.Tensor

    def initialize_parameters(self) -> None:
        cfg, kwargs = self.cfg, {"dtype": self.dtype, "device": self.device}
        d_upper = cfg.d_sae - cfg.d_lower
        self.W_dec_lower = nn.Parameter(kaiming_decoder(cfg.d_lower, cfg.d_in, self.dtype, self.device))
        self.W_dec_upper = nn.Parameter(kaiming_decoder(d_upper, cfg.d_in, self.dtype, self.device))
        self.W_enc_lower = nn.Parameter(ENCODER_INIT_SCALE * self.W_dec_lower.data.T.clone().contiguous())
        self.b_enc_lower = nn.Parameter(torch.zeros(cfg.d_lower, **kwargs))
        # Small, for the reason given at ENCODER_INIT_SCALE: at full scale the new upper level's first outputs swamp
        # the lower level's residual and every upper latent is pushed below zero for good (measured: all dead).
        upper = kaiming_decoder(d_upper, cfg.d_lower, self.dtype, self.device)
        self.W_enc_upper = nn.Parameter(ENCODER_INIT_SCALE * upper.T.clone().contiguous())
        self.b_enc_upper = nn.Parameter(torch.zeros(d_upper, **kwargs))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, **kwargs))
        self.register_buffer("lower_groups", torch.arange(cfg.d_lower, device=self.device))

    @property
    def W_dec(self) -> torch.Tensor:  # type: ignore[override]
        """Both levels' decoder rows `[d_sae, d_in]`, lower first (what SAE-Bench and `decode` use)."""
        return torch.cat([self.W_dec_lower, self.W_dec_upper])

    @property
    def W_enc(self) -> torch.Tensor:  # type: ignore[override]
        """Linear view for SAE-Bench: lower encoder, and the upper's linear part through the lower."""
        return torch.cat([self.W_enc_lower, self.W_enc_lower @ self.W_enc_upper], dim=1)

    @property
    def b_enc(self) -> torch.Tensor:
        return torch.cat([self.b_enc_lower, self.b_enc_upper])

    def encode_levels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lower = torch.relu(self.scale_input(x) @ self.W_enc_lower + self.b_enc_lower)
        upper = torch.relu(lower @ self.W_enc_upper + self.b_enc_upper)
        return lower, upper

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        lower, upper = self.encode_levels(x)
        both = torch.cat([lower, upper], dim=-1)
        return self.hook_sae_acts_post(self.hook_sae_acts_pre(both))

    def decode_lower(self, lower: torch.Tensor) -> torch.Tensor:
        """The lower level's own reconstruction (level 1 of the multi-level loss)."""
        return self.unscale_output(lower @ self.W_dec_lower + self.b_dec)

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "lower": [self.W_enc_lower, self.b_enc_lower, self.W_dec_lower, self.b_dec],
            "upper": [self.W_enc_upper, self.b_enc_upper, self.W_dec_upper],
            "all": list(self.parameters()),
        }

    def after_optimizer_step(self) -> None:
        # A frozen level stays bit-identical: renormalising unit rows again is not exact in floating point.
        with torch.no_grad():
            for decoder in (self.W_dec_lower, self.W_dec_upper):
                if decoder.requires_grad:
                    decoder.data /= decoder.data.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        sequences, _ = as_sequences(x, self.flat_input)
        lower, upper = self.encode_levels(sequences)
        feature_acts = torch.cat([lower, upper], dim=-1)
        reconstruction = self.decode(feature_acts)
        scale = self.activation_scale
        if coefficients["lower_only"]:
            # Phase 1: the upper level does not exist yet.
            reconstruction = self.decode_lower(lower)
            feature_acts = torch.cat([lower, torch.zeros_like(upper)], dim=-1)
        losses = {"mse": masked_mean(squared_error(sequences, reconstruction, scale), mask)}
        if coefficients["lower_mse"]:
            lower_error = squared_error(sequences, self.decode_lower(lower), scale)
            losses["mse_lower"] = coefficients["lower_mse"] * masked_mean(lower_error, mask)
        losses["l1_lower"] = coefficients["beta1"] * masked_mean(lower.sum(-1), mask)
        if not coefficients["lower_only"]:
            losses["l1_upper"] = coefficients["beta2"] * masked_mean(upper.sum(-1), mask)
        if coefficients["group"]:
            losses["group_l21"] = coefficients["group"] * masked_mean(group_l21(lower, self.lower_groups), mask)
        upper_l0 = float((upper.detach()[mask] > 0).float().sum(-1).mean())
        return TrainingOutput(losses, feature_acts, reconstruction, {"L0_upper": upper_l0})

    @torch.no_grad()
    def regroup_lower_latents(self, similarity: float) -> None:
        """Group lower latents whose decoder directions have cosine similarity >= `similarity` (greedy: each
        ungrouped latent, in order, starts a group and takes every ungrouped latent similar enough to it)."""
        self.lower_groups.copy_(cosine_groups(self.W_dec_lower, similarity))


def cosine_groups(directions: torch.Tensor, similarity: float) -> torch.Tensor:
    """Group id per row of `directions`; rows with cosine >= similarity to a group's first row join it."""
    unit = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    cosine = unit @ unit.T
    groups = torch.full((directions.shape[0],), -1, dtype=torch.long, device=directions.device)
    next_group = 0
    for leader in range(directions.shape[0]):
        if groups[leader] >= 0:
            continue
        members = (cosine[leader] >= similarity) & (groups < 0)
        members[leader] = True
        groups[members] = next_group
        next_group += 1
    return groups


def group_l21(acts: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Sum over groups of the L2 norm of the group's activations, per position: `[batch, seq]`."""
    n_groups = int(groups.max()) + 1
    squares = torch.zeros(*acts.shape[:-1], n_groups, dtype=acts.dtype, device=acts.device)
    squares.index_add_(-1, groups, acts.pow(2))
    return squares.clamp_min(1e-12).sqrt().sum(-1)


class HierarchicalOptions(BaseModel):
    """Training settings of the hierarchical SAE (set with --set name=value)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    lower_share: float = Field(default=0.5, gt=0, lt=1)
    """Share of the d_sae latents in the (dense) lower level."""
    beta1: float = Field(default=2.0, ge=0)
    """L1 coefficient of the lower level (dense, so small)."""
    beta2: float = Field(default=4.0, ge=0)
    """L1 coefficient of the upper level; must exceed beta1."""
    lower_mse_coefficient: float = Field(default=1.0, ge=0)
    """Weight of the lower level's own reconstruction in the joint phase."""
    group_coefficient: float = Field(default=0.5, ge=0)
    """Weight of the L2,1 group sparsity over cosine-similar lower latents in the joint phase."""
    group_similarity: float = Field(default=0.3, gt=-1, le=1)
    """Decoder cosine at or above which lower latents share a group."""
    phase_shares: tuple[float, float, float] = (0.4, 0.3, 0.3)
    """Token shares of lower pretraining, upper training and joint fine-tuning."""

    @model_validator(mode="after")
    def _progressive(self) -> HierarchicalOptions:
        if self.beta1 >= self.beta2:
            raise ValueError(f"beta1 ({self.beta1}) must be below beta2 ({self.beta2}): the upper level is sparser")
        if abs(sum(self.phase_shares) - 1) > 1e-6:
            raise ValueError(f"phase_shares must sum to 1, got {self.phase_shares}")
        return self


@register_training_architecture(ARCHITECTURE, options=HierarchicalOptions)
def train_hierarchical(job: TrainingJob, options: HierarchicalOptions) -> HierarchicalSAE:
    """Three-phase curriculum: lower pretraining, upper with the lower frozen, joint fine-tuning."""
    from custom_saes.training.loop import Phase, constant, ramp

    d_lower = max(1, round(job.d_sae * options.lower_share))
    sae = HierarchicalSAE(
        HierarchicalSAEConfig(d_in=job.d_in, d_sae=job.d_sae, d_lower=d_lower, metadata=job.metadata())
    )
    off: dict[str, Any] = {"group": 0.0, "lower_mse": 0.0}
    b1, b2 = options.beta1, options.beta2
    lower, upper, joint = options.phase_shares
    phases = [
        Phase("lower", lower, ramp("beta1", 0.0, b1, beta2=0.0, lower_only=1.0, **off), ("lower",)),
        Phase("upper", upper, ramp("beta2", b1, b2, beta1=0.0, lower_only=0.0, **off), ("upper",)),
        Phase(
            "joint",
            joint,
            constant(
                beta1=b1,
                beta2=b2,
                lower_only=0.0,
                lower_mse=options.lower_mse_coefficient,
                group=options.group_coefficient,
            ),
            ("all",),
            lr_scale=0.3,
            on_start=lambda model: model.regroup_lower_latents(options.group_similarity),
        ),
    ]
    trained = job.train_phased(sae, phases)
    upper_l0 = trained.cfg.metadata.training_log[-1]["L0_upper"]
    trained.cfg.metadata.upper_level_l0 = upper_l0
    if upper_l0 < 0.01:
        # Measured on SmolLM2 layer 6: with beta2 > beta1 the upper level can stop firing during phase 2, when the
        # frozen lower level leaves too little residual to pay its L1. Say so rather than save it silently.
        print(
            f"warning: the upper level stopped firing (L0_upper = {upper_l0:.3g} at the end); the saved SAE is in "
            "effect one-level. Try a smaller --set beta2, or more tokens in phase 2 (--set phase_shares=...).",
            file=sys.stderr,
        )
    return trained


register_sae_class(ARCHITECTURE, HierarchicalSAE, HierarchicalSAEConfig)
