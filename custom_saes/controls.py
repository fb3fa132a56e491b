"""Controls: a plain ReLU SAE and a plain TopK SAE trained by the same shared loop, on the same activations, seed
and initialisation as the `tsae_` architectures, so that an architecture's effect is measured against a model that
differs only in its mechanism (sae-lens's own `relu`/`topk` differ in trainer, data order and initialisation too).

Both are one class, `tsae_control`; the ReLU one is the temporal consistency SAE with its consistency term at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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
from custom_saes.training.registry import PHASED_L1, NoOptions, TrainingJob, register_training_architecture

ARCHITECTURE = "tsae_control"


@dataclass
class ControlSAEConfig(TsaeConfig):
    """A per-token SAE with no mechanism beyond its activation function."""

    activation: Literal["relu", "topk"] = "relu"
    """ReLU (sparsity from the L1 penalty) or TopK (exactly `k` latents per token)."""
    k: int = 32
    """Active latents per token when `activation` is topk."""

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class ControlSAE(TsaeSAE[ControlSAEConfig]):
    b_enc: nn.Parameter

    def initialize_parameters(self) -> None:
        add_linear_sae_parameters(self, self.cfg.d_in, self.cfg.d_sae)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_sae_acts_pre(self.scale_input(x) @ self.W_enc + self.b_enc)
        if self.cfg.activation == "relu":
            return self.hook_sae_acts_post(torch.relu(pre))
        top = pre.topk(min(self.cfg.k, pre.shape[-1]), dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
        return self.hook_sae_acts_post(acts)

    def to_standard(self) -> Any:
        """The ReLU control as sae-lens's own StandardSAE in raw input units (the input scale folded into the
        weights): what code that expects a plain ReLU SAE, such as the temporal LSTM's `init_from`, reads."""
        from sae_lens import StandardSAE, StandardSAEConfig

        if self.cfg.activation != "relu":
            raise ValueError("only the ReLU control is a standard SAE")
        scale = self.activation_scale.detach()
        standard = StandardSAE(StandardSAEConfig(d_in=self.cfg.d_in, d_sae=self.cfg.d_sae, metadata=self.cfg.metadata))
        with torch.no_grad():
            standard.W_enc.copy_(self.W_enc.detach() * scale)
            standard.b_enc.copy_(self.b_enc.detach())
            standard.W_dec.copy_(self.W_dec.detach() / scale)
            standard.b_dec.copy_(self.b_dec.detach() / scale)
        return standard.eval()

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        sequences, _ = as_sequences(x, self.flat_input)
        feature_acts = self.encode(sequences)
        reconstruction = self.decode(feature_acts)
        losses = {"mse": masked_mean(squared_error(sequences, reconstruction, self.activation_scale), mask)}
        if coefficients.get("l1"):
            losses["l1"] = coefficients["l1"] * masked_mean(feature_acts.sum(-1), mask)
        return TrainingOutput(losses, feature_acts, reconstruction)


class TopKControlOptions(BaseModel):
    """Settings of the TopK control (set with --set name=value)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    k: int | None = Field(default=None, gt=0)
    """TopK only: latents per token; None: --k."""


def _control(job: TrainingJob, activation: Literal["relu", "topk"], k: int) -> ControlSAE:
    return ControlSAE(
        ControlSAEConfig(d_in=job.d_in, d_sae=job.d_sae, activation=activation, k=k, metadata=job.metadata())
    )


@register_training_architecture("control_relu")
def train_control_relu(job: TrainingJob, _options: NoOptions) -> ControlSAE:
    """Control: plain ReLU SAE, L1 warmed up over 10% of training, by the shared loop (as tsae_ ReLU variants)."""
    from custom_saes.training.loop import l1_warmup_then_train

    return job.train_phased(_control(job, "relu", job.k), l1_warmup_then_train(job.l1(PHASED_L1)))


@register_training_architecture("control_topk", options=TopKControlOptions)
def train_control_topk(job: TrainingJob, options: TopKControlOptions) -> ControlSAE:
    """Control: plain TopK SAE (--k or --set k=N), by the shared loop (as the tsae_ TopK-family variants)."""
    from custom_saes.training.loop import Phase, constant

    sae = _control(job, "topk", options.k or job.k)
    return job.train_phased(sae, [Phase("train", 1.0, constant())])


register_sae_class(ARCHITECTURE, ControlSAE, ControlSAEConfig)
