"""Hierarchical SAE: a lower-level SAE on the input, and an upper-level SAE on the lower level's code.

    lower:  f1 = relu((x s - b_dec) W_enc_lower + b_enc_lower)        x_hat  = (f1 W_dec_lower + b_dec) / s
    upper:  f2 = relu((f1 c - b_dec_upper) W_enc_upper + b_enc_upper)  f1_hat = (f2 W_dec_upper + b_dec_upper) / c
    loss = |s (x - x_hat)|^2 + beta1 |f1|_1 + upper_mse |c (f1 - f1_hat)|^2 + beta2 |f2|_1   (beta1 < beta2)

s: the stored input scale; c (`code_scale`): the same for the lower code, measured when the upper level starts
training (E|f1 c| = sqrt(d_lower), as E|x s| = sqrt(d_in)). Each level is thus an SAE on normalised input and
beta1, beta2 compare in the same units. Without c the upper level could not pay its L1 on ordinary tokens (on
SmolLM2 layer 6, |f1| is about 5 where |x s| is about 22): it fired only on the 3% of outlier tokens that hold
most of f1's variance. The upper level never sees x: its target is the lower level's code, so an upper latent
stands for a pattern of co-firing lower latents.

sae-lens view: `encode(x)` = [f1, f2] (lower first, d_lower of them); `decode` reads only the lower part, so
`decode(encode(x))` = x_hat, the lower level's reconstruction, and setting an upper latent changes no output. The
upper latents decode through both decoders: f2 -> f1_hat -> (f1_hat W_dec_lower + b_dec) / s (`decode_upper`), so
upper latent j's direction in x space is W_dec_upper[j] @ W_dec_lower / c (normalised units); `W_dec` lists these
after the lower rows (what SAE-Bench reads as feature directions). SAE-Bench reads `W_enc` as a linear encoder;
for the upper level, not linear in x, it sees the linear part c W_enc_lower W_enc_upper (documented approximation).

Curriculum: (1) the lower level alone, beta1 ramped up; (2) `code_scale` measured, then the upper level trained on
the frozen lower level's code, beta2 ramped up; (3) both levels trained together on the whole loss, optionally
with an L2,1 group sparsity over lower latents whose decoder directions are cosine-similar. In (3) the upper terms
train only the upper level unless `upper_shapes_lower`: their gradient through f1 mostly shrinks the lower code
(a smaller f1 is easier to reconstruct), which on SmolLM2 took the lower level's EV from 0.55 to 0.01 in 15 steps.

Metrics (`TrainingOutput.metrics`, in the training log): L0_lower, L0_upper, alive_upper (share of upper latents
that fired in the batch), EV_upper (explained variance of f1 by f1_hat) = mechanism_share; EV (the loop's) is the
lower level's explained variance of x. Caveat: EV_upper is variance-weighted, and on SmolLM2 a few percent of
outlier tokens (|x| 6-9 times the median) hold most of f1's variance.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

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

if TYPE_CHECKING:
    from custom_saes.training.activations import ActivationSource

ARCHITECTURE = "tsae_hierarchical"

DEAD_L0 = 0.01
"""A level whose mean L0 at the end of training is below this counts as dead (training warns)."""
MIN_ALIVE_UPPER = 0.05
"""Training warns when fewer than this share of the upper latents fired in the last logged batch."""


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


class Levels(NamedTuple):
    """Both levels' codes and the upper level's reconstruction of the lower code, in normalised units."""

    lower: torch.Tensor
    """f1 `[..., d_lower]`."""
    upper: torch.Tensor
    """f2 `[..., d_upper]`."""
    lower_hat: torch.Tensor
    """f1_hat `[..., d_lower]`: what the upper level says the lower code is."""


class HierarchicalSAE(TsaeSAE[HierarchicalSAEConfig]):
    mechanism = "upper level's explained variance of the lower code (EV of f1 by f1_hat)"
    lower_groups: torch.Tensor
    code_scale: torch.Tensor

    def initialize_parameters(self) -> None:
        cfg, kwargs = self.cfg, {"dtype": self.dtype, "device": self.device}
        d_upper = cfg.d_sae - cfg.d_lower
        self.W_dec_lower = nn.Parameter(kaiming_decoder(cfg.d_lower, cfg.d_in, self.dtype, self.device))
        self.W_enc_lower = nn.Parameter(ENCODER_INIT_SCALE * self.W_dec_lower.data.T.clone().contiguous())
        self.b_enc_lower = nn.Parameter(torch.zeros(cfg.d_lower, **kwargs))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, **kwargs))
        # The upper level is an SAE of the same form whose input space is the lower code.
        self.W_dec_upper = nn.Parameter(kaiming_decoder(d_upper, cfg.d_lower, self.dtype, self.device))
        self.W_enc_upper = nn.Parameter(ENCODER_INIT_SCALE * self.W_dec_upper.data.T.clone().contiguous())
        self.b_enc_upper = nn.Parameter(torch.zeros(d_upper, **kwargs))
        self.b_dec_upper = nn.Parameter(torch.zeros(cfg.d_lower, **kwargs))
        self.register_buffer("lower_groups", torch.arange(cfg.d_lower, device=self.device))
        self.register_buffer("code_scale", torch.ones((), **kwargs))

    @property
    def d_lower(self) -> int:
        return int(self.cfg.d_lower)  # type: ignore[arg-type]

    @property
    def W_dec(self) -> torch.Tensor:  # type: ignore[override]
        """Every latent's direction in x space `[d_sae, d_in]`: the lower rows, then W_dec_upper @ W_dec_lower
        / code_scale (an upper latent's effect through both decoders). `decode` uses only the lower rows."""
        return torch.cat([self.W_dec_lower, self.W_dec_upper @ self.W_dec_lower / self.code_scale])

    @property
    def W_enc(self) -> torch.Tensor:  # type: ignore[override]
        """Linear view for SAE-Bench: the lower encoder, and the upper's linear part through the lower."""
        return torch.cat([self.W_enc_lower, self.code_scale * self.W_enc_lower @ self.W_enc_upper], dim=1)

    @property
    def b_enc(self) -> torch.Tensor:
        """Biases of the linear view `W_enc` (the upper's includes the lower bias and b_dec_upper it sees)."""
        upper = self.b_enc_upper + (self.code_scale * self.b_enc_lower - self.b_dec_upper) @ self.W_enc_upper
        return torch.cat([self.b_enc_lower, upper])

    def encode_lower(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.scale_input(x) @ self.W_enc_lower + self.b_enc_lower)

    def encode_upper(self, lower: torch.Tensor) -> torch.Tensor:
        """f2 from the lower code f1."""
        return torch.relu((lower * self.code_scale - self.b_dec_upper) @ self.W_enc_upper + self.b_enc_upper)

    def decode_upper_to_lower(self, upper: torch.Tensor) -> torch.Tensor:
        """f1_hat: the upper level's reconstruction of the lower code (in the lower code's units)."""
        return (upper @ self.W_dec_upper + self.b_dec_upper) / self.code_scale

    @torch.no_grad()
    def calibrate_code_scale(self, x: torch.Tensor) -> None:
        """Set `code_scale` so that the lower code of `x [tokens, d_in]` has mean norm sqrt(d_lower) once scaled."""
        norms = self.encode_lower(x.to(self.W_dec_lower.device)).norm(dim=-1)
        self.code_scale.fill_(self.d_lower**0.5 / float(norms.mean().clamp_min(1e-8)))

    def encode_levels(self, x: torch.Tensor) -> Levels:
        lower = self.encode_lower(x)
        upper = self.encode_upper(lower)
        return Levels(lower, upper, self.decode_upper_to_lower(upper))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.encode_levels(x)
        both = torch.cat([levels.lower, levels.upper], dim=-1)
        return self.hook_sae_acts_post(self.hook_sae_acts_pre(both))

    def decode_lower(self, lower: torch.Tensor) -> torch.Tensor:
        """The lower level's reconstruction of x from f1 `[..., d_lower]`, in input units."""
        return self.unscale_output(lower @ self.W_dec_lower + self.b_dec)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """x_hat from [f1, f2]: the lower level's decode of f1; the upper latents do not enter (see the module
        docstring, and `decode_upper` for their own route to x)."""
        return self.decode_lower(feature_acts[..., : self.d_lower])

    def decode_upper(self, upper: torch.Tensor) -> torch.Tensor:
        """x as the upper level alone sees it: f2 -> f1_hat -> the lower decoder, in input units."""
        return self.decode_lower(self.decode_upper_to_lower(upper))

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "lower": [self.W_enc_lower, self.b_enc_lower, self.W_dec_lower, self.b_dec],
            "upper": [self.W_enc_upper, self.b_enc_upper, self.W_dec_upper, self.b_dec_upper],
            "all": list(self.parameters()),
        }

    def after_optimizer_step(self) -> None:
        # Unit rows in each level's own output space, so neither L1 can be dodged by shrinking latents. A frozen
        # level stays bit-identical: renormalising unit rows again is not exact in floating point.
        with torch.no_grad():
            for decoder in (self.W_dec_lower, self.W_dec_upper):
                if decoder.requires_grad:
                    decoder.data /= decoder.data.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        """Coefficients: beta1, beta2 (L1 of each level), upper_mse (weight of |c (f1 - f1_hat)|^2; 0: the upper
        level is not trained), group (L2,1 over the lower groups), upper_shapes_lower (1: the upper level's loss also
        trains the lower level; default 0)."""
        sequences, _ = as_sequences(x, self.flat_input)
        lower = self.encode_lower(sequences)
        # The upper level reads and reconstructs the lower code; unless told, its loss does not move the lower level.
        upper_input = lower if coefficients.get("upper_shapes_lower", 0.0) else lower.detach()
        upper = self.encode_upper(upper_input)
        lower_hat = self.decode_upper_to_lower(upper)
        reconstruction = self.decode_lower(lower)
        scale = self.activation_scale
        losses = {"mse": masked_mean(squared_error(sequences, reconstruction, scale), mask)}
        losses["l1_lower"] = coefficients["beta1"] * masked_mean(lower.sum(-1), mask)
        upper_on = coefficients["upper_mse"] > 0
        if upper_on:
            upper_error = squared_error(upper_input, lower_hat, self.code_scale)
            losses["mse_upper"] = coefficients["upper_mse"] * masked_mean(upper_error, mask)
            losses["l1_upper"] = coefficients["beta2"] * masked_mean(upper.sum(-1), mask)
        if coefficients.get("group", 0.0):
            losses["group_l21"] = coefficients["group"] * masked_mean(group_l21(lower, self.lower_groups), mask)
        shown_upper = upper if upper_on else torch.zeros_like(upper)  # phase 1: the upper level does not exist yet
        metrics = level_metrics(lower.detach(), shown_upper.detach(), lower_hat.detach(), mask)
        return TrainingOutput(losses, torch.cat([lower, shown_upper], dim=-1), reconstruction, metrics)

    @torch.no_grad()
    def regroup_lower_latents(self, similarity: float) -> None:
        """Group lower latents whose decoder directions have cosine similarity >= `similarity` (greedy: each
        ungrouped latent, in order, starts a group and takes every ungrouped latent similar enough to it)."""
        self.lower_groups.copy_(cosine_groups(self.W_dec_lower, similarity))


def explained_variance(target: torch.Tensor, estimate: torch.Tensor) -> float:
    """1 - |target - estimate|^2 / |target - mean target|^2 over rows `[n, d]` (0 when the target is constant)."""
    variance = (target - target.mean(0)).pow(2).sum()
    if variance <= 0:
        return 0.0
    return float(1 - (target - estimate).pow(2).sum() / variance)


def level_metrics(
    lower: torch.Tensor, upper: torch.Tensor, lower_hat: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """Per-level numbers on counted positions: L0 of each level, share of upper latents that fired, and EV_upper
    (explained variance of the lower code by the upper's reconstruction), which is also `mechanism_share`."""
    lower, upper, lower_hat = lower[mask], upper[mask], lower_hat[mask]
    fired = upper > 0
    ev_upper = explained_variance(lower, lower_hat) if fired.any() else 0.0
    return {
        "L0_lower": float((lower > 0).float().sum(-1).mean()),
        "L0_upper": float(fired.float().sum(-1).mean()),
        "alive_upper": float(fired.any(0).float().mean()),
        "EV_upper": ev_upper,
        "mechanism_share": ev_upper,
    }


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
    """Share of the d_sae latents in the lower level (the SAE on x); the rest code the lower level's code."""
    beta1: float = Field(default=2.0, ge=0)
    """L1 coefficient of the lower level."""
    beta2: float = Field(default=4.0, ge=0)
    """L1 coefficient of the upper level; must exceed beta1 (the upper level is the sparser)."""
    upper_mse_coefficient: float = Field(default=1.0, gt=0)
    """Weight of the upper level's reconstruction error of the lower code, |c (f1 - f1_hat)|^2, in phases 2 and 3."""
    # Was 0.5; the seed's loss has no group term, and at 0.5 the lower level's EV on SmolLM2 at 100k tokens fell
    # from 0.64 to 0.56 (L0 258 -> 199) with the upper level unchanged (alive 0.29 vs 0.28).
    group_coefficient: float = Field(default=0.0, ge=0)
    """Weight of the L2,1 group sparsity over cosine-similar lower latents in the joint phase (0: off)."""
    group_similarity: float = Field(default=0.3, gt=-1, le=1)
    """Decoder cosine at or above which lower latents share a group."""
    upper_shapes_lower: bool = False
    """Let the upper level's loss train the lower level too in the joint phase (the seed's fully joint loss)."""
    phase_shares: tuple[float, float, float] = (0.4, 0.3, 0.3)
    """Token shares of lower pretraining, upper training (lower frozen) and joint fine-tuning."""

    @model_validator(mode="after")
    def _progressive(self) -> HierarchicalOptions:
        if self.beta1 >= self.beta2:
            raise ValueError(f"beta1 ({self.beta1}) must be below beta2 ({self.beta2}): the upper level is sparser")
        if abs(sum(self.phase_shares) - 1) > 1e-6:
            raise ValueError(f"phase_shares must sum to 1, got {self.phase_shares}")
        return self


CALIBRATION_TOKENS = 8192
"""Tokens whose lower code sets `code_scale` when the upper level starts training."""


def hierarchical_phases(options: HierarchicalOptions, data: ActivationSource) -> list[Any]:
    """The three phases of the recipe for `options` (custom_saes.training.loop.Phase); `data` (what the loop
    trains on) supplies the tokens that calibrate `code_scale` when phase 2 starts."""
    from custom_saes.training.loop import Phase, constant, ramp

    b1, b2, w = options.beta1, options.beta2, options.upper_mse_coefficient
    lower, upper, joint = options.phase_shares
    return [
        Phase("lower", lower, ramp("beta1", 0.0, b1, beta2=0.0, upper_mse=0.0), ("lower",)),
        Phase(
            "upper",
            upper,
            ramp("beta2", 0.0, b2, beta1=b1, upper_mse=w),
            ("upper",),
            on_start=lambda model: model.calibrate_code_scale(data.sample(CALIBRATION_TOKENS)),
        ),
        Phase(
            "joint",
            joint,
            constant(
                beta1=b1,
                beta2=b2,
                upper_mse=w,
                group=options.group_coefficient,
                upper_shapes_lower=float(options.upper_shapes_lower),
            ),
            ("all",),
            # Was 0.3 when the upper level decoded into x; now the joint phase is where the lower level goes on
            # learning x (its L1 fully ramped), and at 1.0 its EV rose from 0.54 to 0.64 over the phase at 100k tokens.
            lr_scale=1.0,
            on_start=lambda model: model.regroup_lower_latents(options.group_similarity),
        ),
    ]


@register_training_architecture(ARCHITECTURE, options=HierarchicalOptions)
def train_hierarchical(job: TrainingJob, options: HierarchicalOptions) -> HierarchicalSAE:
    """Lower SAE on x, upper SAE on the lower code; lower pretraining, upper on the frozen lower, joint."""
    d_lower = max(1, round(job.d_sae * options.lower_share))
    sae = HierarchicalSAE(
        HierarchicalSAEConfig(d_in=job.d_in, d_sae=job.d_sae, d_lower=d_lower, metadata=job.metadata())
    )
    trained = job.train_phased(sae, hierarchical_phases(options, job.sequence_activations()))
    last = trained.cfg.metadata.training_log[-1]
    metadata = trained.cfg.metadata
    metadata.lower_level_l0 = last["L0_lower"]
    metadata.upper_level_l0 = last["L0_upper"]
    metadata.upper_level_ev = last["EV_upper"]
    warn_if_a_level_died(last)
    return trained


def warn_if_a_level_died(last: dict[str, Any]) -> None:
    """Say so on stderr when the last logged step shows a level that stopped firing, rather than save it silently."""
    for level in ("lower", "upper"):
        if last[f"L0_{level}"] < DEAD_L0:
            print(
                f"warning: the {level} level stopped firing (L0_{level} = {last[f'L0_{level}']:.3g} at the end); "
                "the saved SAE is in effect one-level or empty. Try a smaller --set beta1/beta2 or more tokens.",
                file=sys.stderr,
            )
            return
    if last["alive_upper"] < MIN_ALIVE_UPPER:
        print(
            f"warning: only {last['alive_upper']:.1%} of the upper latents fired in the last batch; "
            "try a smaller --set beta2 or a larger --set upper_mse_coefficient.",
            file=sys.stderr,
        )


register_sae_class(ARCHITECTURE, HierarchicalSAE, HierarchicalSAEConfig)
