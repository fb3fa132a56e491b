"""The sequence-aware SAEs' mechanisms are alive at their defaults: the temporal context buffer is order-aware and
causal and carries a real share of the pre-activation; the temporal LSTM's gates start part-open."""

from __future__ import annotations

import math

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.sae import SAEMetadata

from custom_saes.temporal_context import TemporalContextSAE, TemporalContextSAEConfig, mechanism_share
from custom_saes.temporal_lstm import GATE_INIT_OPENING, TemporalLSTMSAE, TemporalLSTMSAEConfig
from tests import helpers

D = helpers.D_MODEL
CONTEXT_SHARE_FLOOR = 0.1
"""The context drive's share of the pre-activation at initialisation is at least this (it starts near 0.25)."""


def _metadata() -> SAEMetadata:
    return SAEMetadata(hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME)


def _context_sae(seed: int = 0) -> TemporalContextSAE:
    torch.manual_seed(seed)
    sae = TemporalContextSAE(
        TemporalContextSAEConfig(d_in=D, d_sae=64, context_window=3, context_dim=8, n_patterns=5, metadata=_metadata())
    )
    with torch.no_grad():
        sae.activation_scale.fill_(1.3)
    return sae.eval()


def _lstm_sae(seed: int = 0) -> TemporalLSTMSAE:
    torch.manual_seed(seed)
    return TemporalLSTMSAE(
        TemporalLSTMSAEConfig(d_in=D, d_sae=64, memory_window=4, lstm_hidden=8, metadata=_metadata())
    ).eval()


def _inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 8, D, generator=torch.Generator().manual_seed(seed))


def _mask(x: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    mask[:, 0] = False
    return mask


# --- temporal context ------------------------------------------------------------------------------------


def test_context_buffer_is_order_aware():
    sae, x = _context_sae(), _inputs()
    swapped = x.clone()
    swapped[:, [4, 5]] = x[:, [5, 4]]  # the buffer of t = 6 holds 5, 4, 3: same inputs, another order
    with torch.no_grad():
        assert not torch.allclose(sae.encode(swapped)[:, 6], sae.encode(x)[:, 6], atol=1e-4)
        # An average of the buffer would not see the swap in the drive either.
        assert not torch.allclose(
            sae.context_drive(sae.scale_input(swapped))[:, 6], sae.context_drive(sae.scale_input(x))[:, 6], atol=1e-4
        )


def test_context_is_causal_and_limited_to_the_window():
    sae, x = _context_sae(), _inputs()
    later = x.clone()
    later[:, 6:] += torch.randn_like(later[:, 6:])
    far = x.clone()
    far[:, :2] += torch.randn_like(far[:, :2])  # t = 5 reads 4, 3, 2 only (window 3)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(later)[:, :6], sae.encode(x)[:, :6])
        torch.testing.assert_close(sae.encode(far)[:, 5:], sae.encode(x)[:, 5:])


def test_context_share_of_the_pre_activation_is_above_the_floor_at_initialisation():
    sae, x = _context_sae(), _inputs()
    with torch.no_grad():
        out = sae.training_forward(x, _mask(x), {"l1": 1.0})
    assert out.metrics["mechanism_share"] > CONTEXT_SHARE_FLOOR
    assert "context" in type(sae).mechanism


def test_context_share_by_hand():
    token = torch.tensor([[[3.0, -1.0], [1.0, 1.0]]])
    drive = torch.tensor([[[9.0, 9.0], [-1.0, 0.0]]])
    mask = torch.tensor([[False, True]])
    assert mechanism_share(token, drive, mask) == pytest.approx(0.5 / (1.0 + 0.5))


def test_context_path_learns_from_the_first_steps():
    sae, x = _context_sae().train(), _inputs()
    out = sae.training_forward(x, _mask(x), {"l1": 1.0})
    sum(out.losses.values()).backward()
    for name in ("W_context", "patterns", "W_pattern", "lag_gain"):
        assert getattr(sae, name).grad.abs().sum() > 0, name


def test_context_flat_input_has_no_context():
    sae, x = _context_sae(), _inputs()
    flat = x.reshape(-1, D)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(flat), sae.encode(flat[:, None, :])[:, 0])


# --- temporal LSTM -----------------------------------------------------------------------------------------


def test_lstm_gates_start_part_open():
    sae, x = _lstm_sae(), _inputs()
    assert 0.3 <= GATE_INIT_OPENING <= 0.5
    with torch.no_grad():
        gate = sae.encode_parts(sae.scale_input(x))["gate"]
    assert 0.3 <= gate.mean().item() <= 0.5
    assert torch.sigmoid(sae.b_gate).min().item() == pytest.approx(GATE_INIT_OPENING, rel=1e-5)


def test_lstm_gate_penalty_does_not_push_gates_without_a_proposal():
    sae, x = _lstm_sae().train(), _inputs()
    out = sae.training_forward(x, _mask(x), {"l1": 0.0, "gate_l1": 1.0, "distill": 0.0})
    out.losses["gate_l1"].backward()
    assert out.losses["gate_l1"].item() == 0.0  # W_temporal starts at zero: nothing is admitted yet
    assert sae.b_gate.grad is None or sae.b_gate.grad.abs().sum() == 0


def test_lstm_temporal_share_is_zero_at_initialisation_and_grows_with_the_decoder_path():
    sae, x = _lstm_sae(), _inputs()
    with torch.no_grad():
        sae.activation_scale.fill_(1.7)
        before = sae.training_forward(x, _mask(x), {"l1": 0.0, "gate_l1": 0.0, "distill": 0.0})
        sae.W_decoder_temporal.normal_()
        after = sae.training_forward(x, _mask(x), {"l1": 0.0, "gate_l1": 0.0, "distill": 0.0})
    assert before.metrics["mechanism_share"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < after.metrics["mechanism_share"] < 1.0
    assert "temporal" in type(sae).mechanism


# --- both ----------------------------------------------------------------------------------------------------


def _randomised(sae: SAE) -> SAE:
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in sae.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(noise / math.sqrt(parameter.shape[0]) if parameter.dim() > 1 else 0.1 * noise)
    return sae


@pytest.mark.parametrize("build", [_context_sae, _lstm_sae], ids=["context", "lstm"])
def test_forward_is_decode_of_encode(build):
    sae, x = _randomised(build()), _inputs()
    with torch.no_grad():
        torch.testing.assert_close(sae(x), sae.decode(sae.encode(x)), rtol=0, atol=0)
        flat = x.reshape(-1, D)
        torch.testing.assert_close(sae(flat), sae.decode(sae.encode(flat)), rtol=0, atol=0)


@pytest.mark.parametrize("build", [_context_sae, _lstm_sae], ids=["context", "lstm"])
def test_save_then_load_gives_identical_outputs(build, tmp_path):
    sae, x = _randomised(build()), _inputs()
    sae.save_model(tmp_path / "sae")
    loaded = SAE.load_from_disk(str(tmp_path / "sae")).eval()
    assert type(loaded) is type(sae)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded(x), sae(x))
