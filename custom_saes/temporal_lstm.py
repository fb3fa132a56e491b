"""Temporal LSTM SAE: a static ReLU SAE plus LSTM paths over a sliding window of feature memory.

Encoder: static pre-activations s_t = x_t W_enc + b_enc (the bridge: a pretrained static SAE's latents pass
straight through); an LSTM reads the last `memory_window` static codes (projected to `lstm_hidden`) and proposes
a temporal pre-activation u_t, admitted latent by latent through sparse gates g_t in [0, 1]:
f_t = ReLU(s_t + g_t * u_t). Decoder: x_hat_t = f_t W_dec + b_dec + an LSTM over the last `memory_window` codes
mapped to the input space. Both temporal paths start at zero, so the untrained model equals the static SAE; the
gates start part-open (`GATE_INIT_OPENING`), so the encoder's temporal proposals take effect as soon as they are
learnt. Causal; flattened `[tokens, d_in]` input is read as tokens each alone.

`track_lifecycle()` attaches a FeatureLifecycleTracker that records births, deaths and lifetimes of latents
during every inference encode.

Training (recipe below): initialise from a pretrained static SAE, then (1) static feature distillation,
(2) temporal feature introduction with the static path frozen (at `temporal_lr_scale` x --lr), (3) end-to-end
refinement; the L1 coefficient is annealed upward from `sparsity_start` x --l1 through phases 1 and 2. The gate
penalty is an L1 on the admitted temporal edit `g_t * u_t`, not on the gate opening itself: an opening with nothing
to admit costs nothing, so the penalty cannot simply push unused gates shut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
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
from custom_saes.controls import ControlSAE
from custom_saes.errors import InvalidOption
from custom_saes.lifecycle import FeatureLifecycleTracker
from custom_saes.training.registry import PHASED_L1, TrainingJob, register_training_architecture

ARCHITECTURE = "tsae_temporal_lstm"
GATE_INIT_OPENING = 0.4
"""Mean gate opening at initialisation (the gate bias starts at logit(0.4)); at sigmoid(-3) = 0.047 the gates
started almost shut and the penalty on their opening shut them further."""


@dataclass
class TemporalLSTMSAEConfig(TsaeConfig):
    """Sizes of the feature memory and the LSTMs."""

    memory_window: int = 16
    """Positions of feature memory each LSTM reads (the current one included)."""
    lstm_hidden: int = 64
    """Hidden width of both LSTMs (and of the projected memory)."""

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class TemporalLSTMSAE(TsaeSAE[TemporalLSTMSAEConfig]):
    sequence_aware = True
    flat_input: ClassVar[FlatInput] = "each_token_alone"
    mechanism: ClassVar[str] = (
        "temporal paths / reconstruction norm: mean |x_hat - f_static W_dec - b_dec| / (mean |f_static W_dec| + "
        "that), f_static = ReLU(s_t) (normalised units; the gated encoder edit and the decoder LSTM together)"
    )
    b_enc: nn.Parameter

    def initialize_parameters(self) -> None:
        cfg, kwargs = self.cfg, {"dtype": self.dtype, "device": self.device}
        add_linear_sae_parameters(self, cfg.d_in, cfg.d_sae)
        hidden = cfg.lstm_hidden
        self.memory_in = nn.Parameter(torch.randn(cfg.d_sae, hidden, **kwargs) / math.sqrt(cfg.d_sae))
        self.encoder_lstm = nn.LSTM(hidden, hidden, batch_first=True, **kwargs)
        self.W_gate = nn.Parameter(torch.randn(hidden, cfg.d_sae, **kwargs) / math.sqrt(hidden))
        # Gates start part-open: W_temporal starts at zero, so an open gate changes nothing until a proposal is learnt.
        opening = GATE_INIT_OPENING
        self.b_gate = nn.Parameter(torch.full((cfg.d_sae,), math.log(opening / (1 - opening)), **kwargs))
        self.W_temporal = nn.Parameter(torch.zeros(hidden, cfg.d_sae, **kwargs))
        self.decoder_memory_in = nn.Parameter(torch.randn(cfg.d_sae, hidden, **kwargs) / math.sqrt(cfg.d_sae))
        self.decoder_lstm = nn.LSTM(hidden, hidden, batch_first=True, **kwargs)
        self.W_decoder_temporal = nn.Parameter(torch.zeros(hidden, cfg.d_in, **kwargs))
        self.lifecycle: FeatureLifecycleTracker | None = None
        self.distillation_teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def track_lifecycle(self, max_lifetime: int = 128) -> FeatureLifecycleTracker:
        """Start recording births, deaths and lifetimes on every inference encode; returns the tracker."""
        self.lifecycle = FeatureLifecycleTracker(self.cfg.d_sae, max_lifetime)
        return self.lifecycle

    def _windowed(self, lstm: nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
        """LSTM output at each position after reading the last `memory_window` inputs `[batch, seq, hidden]`."""
        batch, seq, hidden = inputs.shape
        window = self.cfg.memory_window
        padded = torch.nn.functional.pad(inputs, (0, 0, window - 1, 0))
        windows = padded.unfold(1, window, 1).permute(0, 1, 3, 2).reshape(batch * seq, window, hidden)
        outputs, _ = lstm(windows)
        return outputs[:, -1].reshape(batch, seq, hidden)

    def encode_parts(self, sequences: torch.Tensor) -> dict[str, torch.Tensor]:
        """Static pre-activations, gates and temporal proposals of `[batch, seq, d_in]` input."""
        static = sequences @ self.W_enc + self.b_enc
        memory = self._windowed(self.encoder_lstm, torch.relu(static) @ self.memory_in)
        gate = torch.sigmoid(memory @ self.W_gate + self.b_gate)
        return {"static": static, "gate": gate, "temporal": memory @ self.W_temporal}

    def _encode_sequences(self, sequences: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = self.encode_parts(self.scale_input(sequences))
        pre = self.hook_sae_acts_pre(parts["static"] + parts["gate"] * parts["temporal"])
        feature_acts = self.hook_sae_acts_post(torch.relu(pre))
        if self.lifecycle is not None and not self.training:
            self.lifecycle.observe(feature_acts)
        return feature_acts, parts

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sequences, restore = as_sequences(x, self.flat_input)
        return restore(self._encode_sequences(sequences)[0])

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        codes, restore = as_sequences(feature_acts, self.flat_input)
        memory = self._windowed(self.decoder_lstm, codes @ self.decoder_memory_in)
        return restore(self.unscale_output(codes @ self.W_dec + self.b_dec + memory @ self.W_decoder_temporal))

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        static = [self.W_enc, self.b_enc, self.W_dec, self.b_dec]
        static_ids = {id(p) for p in static}
        return {
            "static": static,
            "temporal": [p for p in self.parameters() if id(p) not in static_ids],
            "all": list(self.parameters()),
        }

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        feature_acts, parts = self._encode_sequences(x)
        reconstruction = self.decode(feature_acts)
        admitted = (parts["gate"] * parts["temporal"]).abs()
        losses = {
            "mse": masked_mean(squared_error(x, reconstruction, self.activation_scale), mask),
            "l1": coefficients["l1"] * masked_mean(feature_acts.sum(-1), mask),
            "gate_l1": coefficients["gate_l1"] * masked_mean(admitted.mean(-1), mask),
        }
        if coefficients["distill"] and self.distillation_teacher is not None:
            W_enc, b_enc, b_dec = (t.to(x.device) for t in self.distillation_teacher)
            teacher = torch.relu((x * self.activation_scale - b_dec) @ W_enc + b_enc)
            error = (torch.relu(parts["static"]) - teacher).pow(2).sum(-1)
            losses["distill"] = coefficients["distill"] * masked_mean(error, mask)
        metrics = {
            "gate": float(parts["gate"].detach()[mask].mean()),
            "mechanism_share": self.temporal_share(parts["static"].detach(), reconstruction.detach(), mask),
        }
        return TrainingOutput(losses, feature_acts, reconstruction, metrics)

    @torch.no_grad()
    def temporal_share(self, static: torch.Tensor, reconstruction: torch.Tensor, mask: torch.Tensor) -> float:
        """Share of the temporal paths in the reconstruction norm (normalised units, b_dec left out): the
        reconstruction minus what the static codes ReLU(s_t) decode to, against the static part."""
        static_part = torch.relu(static) @ self.W_dec
        temporal_part = reconstruction * self.activation_scale - self.b_dec - static_part
        static_size = float(masked_mean(static_part.norm(dim=-1), mask))
        temporal_size = float(masked_mean(temporal_part.norm(dim=-1), mask))
        return temporal_size / max(static_size + temporal_size, 1e-12)

    @torch.no_grad()
    def load_static_sae(self, static: Any) -> None:
        """Copy a sae-lens ReLU SAE (inputs in raw units) into the static path, rescaled to this SAE's input scale
        with unit-norm decoder rows, so that with closed temporal paths both give identical reconstructions."""
        scale = self.activation_scale
        decoder = static.W_dec.detach() * scale
        norms = decoder.norm(dim=-1).clamp_min(1e-8)
        self.W_dec.copy_(decoder / norms[:, None])
        self.W_enc.copy_(static.W_enc.detach() / scale * norms[None, :])
        self.b_enc.copy_(static.b_enc.detach() * norms)
        self.b_dec.copy_(static.b_dec.detach() * scale)


class TemporalLSTMOptions(BaseModel):
    """Training settings of the temporal LSTM SAE (set with --set name=value); L1 comes from --l1."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")
    window_option: ClassVar[str] = "memory_window"
    """The setting `ablate-window` sweeps."""

    init_from: Path | None = None
    """Directory of the pretrained static sae-lens ReLU SAE ("standard") at the same hook: required."""
    memory_window: int = Field(default=16, ge=1)
    """Positions of feature memory the LSTMs read."""
    lstm_hidden: int = Field(default=64, ge=1)
    """Hidden width of the LSTMs."""
    distill_coefficient: float = Field(default=1.0, ge=0)
    """Weight of the static-latent distillation loss in phase 1."""
    gate_l1_coefficient: float = Field(default=1.0, ge=0)
    """Weight of the L1 on the admitted temporal edit, mean over latents of |g_t * u_t| (keeps temporal edits
    sparse; a gate with nothing to admit is not penalised)."""
    temporal_lr_scale: float = Field(default=10.0, gt=0)
    """Learning-rate multiplier of phase 2, where only the zero-initialised temporal paths train: at 1 they
    barely left zero in runs of a few hundred steps."""
    sparsity_start: float = Field(default=0.2, gt=0, le=1)
    """L1 annealing starts at this fraction of --l1 and reaches --l1 at the end of phase 2."""
    phase_shares: tuple[float, float, float] = (0.3, 0.4, 0.3)
    """Token shares of distillation, temporal introduction and end-to-end refinement."""

    @model_validator(mode="after")
    def _shares(self) -> TemporalLSTMOptions:
        if abs(sum(self.phase_shares) - 1) > 1e-6:
            raise ValueError(f"phase_shares must sum to 1, got {self.phase_shares}")
        return self


@register_training_architecture(ARCHITECTURE, options=TemporalLSTMOptions)
def train_temporal_lstm(job: TrainingJob, options: TemporalLSTMOptions) -> TemporalLSTMSAE:
    """From a pretrained static SAE: distillation, temporal introduction (static frozen), end-to-end."""
    from custom_saes.training.loop import Phase, constant, ramp

    static = _load_static(options.init_from, job)
    sae = TemporalLSTMSAE(
        TemporalLSTMSAEConfig(
            d_in=job.d_in,
            d_sae=static.cfg.d_sae,
            memory_window=options.memory_window,
            lstm_hidden=options.lstm_hidden,
            metadata=job.metadata(init_from=str(options.init_from)),
        )
    )
    with torch.no_grad():
        sae.activation_scale.fill_(job.sequence_activations().scale)
    sae.load_static_sae(static)
    sae.distillation_teacher = (sae.W_enc.detach().clone(), sae.b_enc.detach().clone(), sae.b_dec.detach().clone())
    l1, start = job.l1(PHASED_L1), options.sparsity_start
    middle = (start + 1) / 2
    distill, gate = options.distill_coefficient, options.gate_l1_coefficient
    shares = options.phase_shares
    phases = [
        Phase(
            "static_distillation",
            shares[0],
            ramp("l1", start * l1, middle * l1, distill=distill, gate_l1=0.0),
            ("static",),
        ),
        Phase(
            "temporal_introduction",
            shares[1],
            ramp("l1", middle * l1, l1, distill=0.0, gate_l1=gate),
            ("temporal",),
            lr_scale=options.temporal_lr_scale,
        ),
        Phase("end_to_end", shares[2], constant(l1=l1, distill=0.0, gate_l1=gate), ("all",), lr_scale=0.3),
    ]
    trained = job.train_phased(sae, phases)
    trained.distillation_teacher = None
    return trained


def _load_static(path: Path | None, job: TrainingJob) -> Any:
    from sae_lens import SAE

    fix = "train one first (python -m tsae_evals train --arch relu ...) and pass --set init_from=DIR"
    if path is None:
        raise InvalidOption("the temporal LSTM SAE starts from a pretrained static SAE, and none was given", fix)
    if not (path / "cfg.json").is_file():
        raise InvalidOption(f"--set init_from={path}: no sae-lens SAE there (cfg.json missing)", fix)
    static = SAE.load_from_disk(str(path), device="cpu")
    if isinstance(static, ControlSAE) and static.cfg.activation == "relu":
        static = static.to_standard()  # the ReLU control (sweeps start the LSTM from it) in sae-lens's own form
    problems = []
    if static.cfg.architecture() != "standard":
        problems.append(f"its architecture is {static.cfg.architecture()!r}, not a ReLU ('standard') SAE")
    if static.cfg.d_in != job.d_in:
        problems.append(f"its d_in is {static.cfg.d_in}, the hook's is {job.d_in}")
    if static.cfg.metadata.hook_name not in (None, job.hook_name):
        problems.append(f"it reads {static.cfg.metadata.hook_name}, this training reads {job.hook_name}")
    if static.cfg.normalize_activations != "none":
        problems.append(f"its activations are normalised at run time ({static.cfg.normalize_activations})")
    if problems:
        raise InvalidOption(f"--set init_from={path} cannot seed this SAE: " + "; ".join(problems), fix)
    return static


register_sae_class(ARCHITECTURE, TemporalLSTMSAE, TemporalLSTMSAEConfig)
