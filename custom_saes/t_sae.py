"""T-SAE (Bhalla et al. 2025, arXiv 2511.05541): a Matryoshka BatchTopK SAE whose first `high_level_fraction` of
latents (the high-level, semantic part) is pulled together across adjacent tokens by an InfoNCE loss.

Training: batch top-k over the batch's counted tokens; loss = reconstruction from the high-level prefix alone +
reconstruction from all latents (the Matryoshka nesting) + contrastive term on the high-level codes of (t-1, t)
pairs from the same sequence, with pairs from other sequences as negatives. Inference: the batch top-k becomes
a fixed threshold (a running estimate of the smallest kept activation), like sae-lens's BatchTopK -> JumpReLU,
so encoding is per token and flattened input means plain tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
from custom_saes.training.registry import TrainingJob, register_training_architecture

ARCHITECTURE = "tsae_t_sae"


@dataclass
class TSAEConfig(TsaeConfig):
    """Matryoshka split and sparsity of a T-SAE."""

    k: float = 32.0
    """Mean active latents per token during training (batch top-k)."""
    high_level_fraction: float = 0.2
    """Leading share of latents that form the high-level (contrastive) group."""

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE

    @property
    def n_high_level(self) -> int:
        return max(1, round(self.d_sae * self.high_level_fraction))


class TSAE(TsaeSAE[TSAEConfig]):
    b_enc: nn.Parameter
    threshold: torch.Tensor

    def initialize_parameters(self) -> None:
        add_linear_sae_parameters(self, self.cfg.d_in, self.cfg.d_sae)
        self.register_buffer("threshold", torch.zeros((), dtype=self.dtype, device=self.device))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_sae_acts_pre(torch.relu(self.scale_input(x) @ self.W_enc + self.b_enc))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        return self.hook_sae_acts_post(pre * (pre > self.threshold))

    def decode_high_level(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """Reconstruction from the high-level prefix alone (the inner Matryoshka level)."""
        h = self.cfg.n_high_level
        return self.unscale_output(feature_acts[..., :h] @ self.W_dec[:h] + self.b_dec)

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        sequences, _ = as_sequences(x, self.flat_input)
        feature_acts = batch_top_k(self.pre_activations(sequences), mask, self.cfg.k)
        self._update_threshold(feature_acts, mask)
        reconstruction = self.decode(feature_acts)
        scale = self.activation_scale
        losses = {
            "mse": masked_mean(squared_error(sequences, reconstruction, scale), mask),
            "mse_high": masked_mean(squared_error(sequences, self.decode_high_level(feature_acts), scale), mask),
            "contrastive": coefficients["contrastive"]
            * adjacent_info_nce(feature_acts[..., : self.cfg.n_high_level], mask, coefficients["temperature"]),
        }
        return TrainingOutput(losses, feature_acts, reconstruction, {"threshold": float(self.threshold)})

    @torch.no_grad()
    def _update_threshold(self, feature_acts: torch.Tensor, mask: torch.Tensor, rate: float = 0.01) -> None:
        """Track the batch's smallest kept activation: the threshold that reproduces batch top-k on that batch.
        A plain running mean for the first 1/rate updates, an exponential average after: an EMA from the first
        value lags for hundreds of steps, and short CPU runs would then encode at several times k."""
        kept = feature_acts[mask]
        positive = kept[kept > 0]
        if positive.numel():
            self.threshold_updates = getattr(self, "threshold_updates", 0) + 1
            weight = max(rate, 1.0 / self.threshold_updates)
            self.threshold.mul_(1 - weight).add_(weight * positive.min())


def batch_top_k(pre: torch.Tensor, mask: torch.Tensor, k: float) -> torch.Tensor:
    """Keep the k * n_counted largest activations among counted positions of the batch; zero everything else."""
    counted = pre * mask[..., None]
    flat = counted.flatten()
    keep = min(flat.numel(), int(k * int(mask.sum())))
    top = torch.topk(flat, keep)
    return torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(pre.shape)


def adjacent_info_nce(
    codes: torch.Tensor, mask: torch.Tensor, temperature: float, pairs_per_sequence: int = 8, seed: int = 0
) -> torch.Tensor:
    """InfoNCE on cosine similarity: anchor = code at t, positive = code at t-1 of the same sequence, negatives =
    the t-1 codes sampled from the other sequences of the batch (never the same sequence, which shares topic)."""
    batch, seq, _ = codes.shape
    valid = mask[:, 1:] & mask[:, :-1]
    # Pairs are drawn on the CPU so that every device samples the same ones.
    generator = torch.Generator().manual_seed(seed)
    anchors, positives, owners = [], [], []
    for row in range(batch):
        positions = valid[row].nonzero().flatten().cpu() + 1
        if positions.numel() == 0:
            continue
        drawn = torch.randperm(positions.numel(), generator=generator)[:pairs_per_sequence]
        chosen = positions[drawn].to(codes.device)
        anchors.append(codes[row, chosen])
        positives.append(codes[row, chosen - 1])
        owners.append(torch.full((chosen.numel(),), row, device=codes.device))
    if len(anchors) < 2:
        return codes.new_zeros(())
    anchor = F.normalize(torch.cat(anchors), dim=-1, eps=1e-6)
    positive = F.normalize(torch.cat(positives), dim=-1, eps=1e-6)
    owner = torch.cat(owners)
    logits = anchor @ positive.T / temperature
    same_sequence = owner[:, None] == owner[None, :]
    diagonal = torch.eye(len(owner), dtype=torch.bool, device=codes.device)
    logits = logits.masked_fill(same_sequence & ~diagonal, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(owner), device=codes.device))


class TSAEOptions(BaseModel):
    """Training settings of the T-SAE (set with --set name=value); k comes from --k."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    high_level_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share of latents in the high-level group (the paper's 20:80 split)."""
    contrastive_coefficient: float = Field(default=1.0, ge=0)
    """Weight of the InfoNCE term against the two normalised MSE terms."""
    temperature: float = Field(default=0.1, gt=0)
    """InfoNCE temperature on cosine similarities."""


@register_training_architecture(ARCHITECTURE, options=TSAEOptions)
def train_t_sae(job: TrainingJob, options: TSAEOptions) -> TSAE:
    """Matryoshka BatchTopK + adjacent-token contrastive loss on the high-level latents."""
    from custom_saes.training.loop import Phase, constant

    sae = TSAE(
        TSAEConfig(
            d_in=job.d_in,
            d_sae=job.d_sae,
            k=float(job.k),
            high_level_fraction=options.high_level_fraction,
            metadata=job.metadata(),
        )
    )
    coefficients = constant(contrastive=options.contrastive_coefficient, temperature=options.temperature)
    return job.train_phased(sae, [Phase("train", 1.0, coefficients)])


register_sae_class(ARCHITECTURE, TSAE, TSAEConfig)
