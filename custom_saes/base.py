"""What every `tsae_` architecture shares: the sae-lens base class, input scaling, sequence shapes, training hooks.

Contract (../shared/design.md): `decode(encode(x))` is the full reconstruction `forward(x)` returns; inputs are
`[batch, seq, d_in]` or flattened `[tokens, d_in]`, and each class says in `flat_input` what the flattened form
means. Sequence-aware classes use context only along `seq` and only causally.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

import torch
from sae_lens.saes.sae import SAE, SAEConfig
from torch import nn

FlatInput = Literal["per_token", "each_token_alone"]
"""`per_token`: the SAE never uses context, so flattened input is simply tokens. `each_token_alone`: a
sequence-aware SAE reads each row of `[tokens, d_in]` as a sequence of length one (no context)."""


@dataclass
class TsaeConfig(SAEConfig):
    """Base config: everything an architecture needs at inference; training coefficients live in its recipe."""

    @classmethod
    @abstractmethod
    def architecture(cls) -> str: ...


C = TypeVar("C", bound=TsaeConfig)


@dataclass
class TrainingOutput:
    """One training forward on `[batch, seq, d_in]` activations."""

    losses: dict[str, torch.Tensor]
    """Weighted loss terms; the optimiser minimises their sum."""
    feature_acts: torch.Tensor
    """Latents `[batch, seq, d_sae]` (for the progress line's L0)."""
    reconstruction: torch.Tensor
    """Full reconstruction `[batch, seq, d_in]` in input units (for the progress line's explained variance)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Extra numbers worth showing while training (e.g. a gate's mean); `mechanism_share` (see TsaeSAE.mechanism)
    is the one a sweep table reports."""


class TsaeSAE(SAE[C], Generic[C]):
    """sae-lens SAE with a stored input scale and helpers for sequence-shaped input.

    Inputs are multiplied by `activation_scale` (set before training so that E|x| = sqrt(d_in), as sae-lens's
    "expected_average_only_in") and reconstructions divided by it. Keeping the scale as a buffer instead of
    folding it into the weights works for architectures with non-linear paths on the input (LSTMs, gates).
    """

    sequence_aware: ClassVar[bool] = False
    """True when a latent at position t also depends on earlier positions of the same sequence."""
    flat_input: ClassVar[FlatInput] = "per_token"
    """What `[tokens, d_in]` input means for this class (see FlatInput)."""
    mechanism: ClassVar[str] = ""
    """What `TrainingOutput.metrics["mechanism_share"]` is a share of, in a few words (e.g. "consistency term /
    total loss"); empty for SAEs with no mechanism beyond a plain SAE. It makes an inert mechanism visible."""

    activation_scale: torch.Tensor

    def initialize_weights(self) -> None:
        self.register_buffer("activation_scale", torch.ones((), dtype=self.dtype, device=self.device))
        self.initialize_parameters()

    @abstractmethod
    def initialize_parameters(self) -> None:
        """Create the architecture's parameters (called by sae-lens's constructor, also on the meta device)."""

    @abstractmethod
    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        """Losses on raw activations `x [batch, seq, d_in]`; `mask [batch, seq]` marks the positions that count."""

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        """Hook, scale and centre the raw input: what the encoder reads."""
        x = self.hook_sae_input(x.to(self.dtype))
        return x * self.activation_scale - self.b_dec

    def unscale_output(self, reconstruction: torch.Tensor) -> torch.Tensor:
        return self.hook_sae_recons(reconstruction) / self.activation_scale

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """Linear decoder in normalised units, then back to input units; classes with temporal decoder paths
        override it."""
        return self.unscale_output(feature_acts @ self.W_dec + self.b_dec)

    def after_optimizer_step(self) -> None:
        """Keep decoder rows at unit norm, so L1 penalties cannot be dodged by shrinking latents."""
        if self.W_dec.requires_grad:
            with torch.no_grad():
                self.W_dec.data /= self.W_dec.data.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups that training phases freeze or train; default: everything in one group."""
        return {"all": list(self.parameters())}


def as_sequences(x: torch.Tensor, flat_input: FlatInput) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """View `x` as `[batch, seq, d]`; returns the view and a function restoring the original leading shape."""
    if x.dim() < 2:
        raise ValueError(f"expected [tokens, d] or [batch, seq, d] input, got shape {tuple(x.shape)}")
    leading = x.shape[:-1]
    if x.dim() == 2:
        # Each row is a token; for sequence-aware classes a sequence of length one.
        sequences = x[:, None, :] if flat_input == "each_token_alone" else x[None, :, :]
    else:
        sequences = x.reshape(-1, x.shape[-2], x.shape[-1])

    def restore(y: torch.Tensor) -> torch.Tensor:
        return y.reshape(*leading, y.shape[-1])

    return sequences, restore


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values [batch, seq]` over positions where `mask` is True."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def loss_share(losses: dict[str, torch.Tensor], name: str) -> float:
    """Loss term `name`'s share of the summed loss (a `mechanism_share` for loss-defined mechanisms)."""
    total = float(sum(loss.detach() for loss in losses.values()))
    return float(losses[name].detach()) / total if total > 0 else 0.0


def squared_error(x: torch.Tensor, reconstruction: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-position squared error in normalised units, `[batch, seq]`."""
    return ((reconstruction - x) * scale).pow(2).sum(-1)


def unit_rows(rows: torch.Tensor) -> torch.Tensor:
    return rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def kaiming_decoder(d_sae: int, d_in: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Unit-norm random decoder rows (meta-device safe)."""
    weight = torch.empty(d_sae, d_in, dtype=dtype, device=device)
    if weight.device.type != "meta":
        nn.init.kaiming_uniform_(weight)
        weight = unit_rows(weight)
    return weight


def iter_registered() -> Iterator[tuple[str, type[Any]]]:
    """(architecture id, SAE class) for every `tsae_` architecture registered with sae-lens."""
    from sae_lens.registry import SAE_CLASS_REGISTRY

    for name, (sae_class, _config_class) in sorted(SAE_CLASS_REGISTRY.items()):
        if name.startswith("tsae_"):
            yield name, sae_class


ENCODER_INIT_SCALE = 0.1
"""W_enc starts as this x W_dec^T. At 1, half of all latents fire on normalised inputs with large values and the
first reconstructions are several times the input (explained variance about -3); sae-lens starts its decoder at
norm 0.1 for the same reason. Decoder rows stay unit-norm, so L1 penalties keep their meaning."""


def add_linear_sae_parameters(sae: SAE[Any], d_in: int, d_sae: int) -> None:
    """W_enc `[d_in, d_sae]` = 0.1 W_dec^T, zero b_enc and b_dec, unit-norm decoder rows."""
    decoder = kaiming_decoder(d_sae, d_in, sae.dtype, sae.device)
    sae.W_dec = nn.Parameter(decoder)
    sae.W_enc = nn.Parameter(ENCODER_INIT_SCALE * decoder.T.clone().contiguous())
    sae.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=sae.dtype, device=sae.device))
    sae.b_dec = nn.Parameter(torch.zeros(d_in, dtype=sae.dtype, device=sae.device))
