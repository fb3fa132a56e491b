"""The hierarchical SAE follows its seed design: the upper level is an SAE on the lower level's code."""

from __future__ import annotations

import math

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.sae import SAEMetadata

import custom_saes  # noqa: F401  (registers the architectures with sae-lens)
from custom_saes.hierarchical import (
    HierarchicalOptions,
    HierarchicalSAE,
    HierarchicalSAEConfig,
    hierarchical_phases,
)
from custom_saes.training.activations import SequenceActivations
from custom_saes.training.loop import train_in_phases
from tests import helpers


def _sae(d_in: int = 4, d_sae: int = 5, d_lower: int = 3) -> HierarchicalSAE:
    metadata = SAEMetadata(hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME)
    return HierarchicalSAE(HierarchicalSAEConfig(d_in=d_in, d_sae=d_sae, d_lower=d_lower, metadata=metadata))


def _randomised(sae: HierarchicalSAE, seed: int = 0) -> HierarchicalSAE:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
        sae.activation_scale.fill_(1.3)
    return sae.eval()


def test_the_upper_loss_target_is_the_lower_code_by_hand():
    sae = _sae(d_in=2, d_sae=3, d_lower=2)
    with torch.no_grad():
        sae.W_enc_lower.copy_(torch.eye(2))
        sae.b_enc_lower.zero_()
        sae.W_dec_lower.copy_(torch.eye(2))
        sae.b_dec.zero_()
        sae.W_enc_upper.copy_(torch.tensor([[1.0], [0.0]]))  # f2 = relu(f1[0] - b_dec_upper[0] + b_enc_upper)
        sae.b_enc_upper.fill_(-0.5)
        sae.W_dec_upper.copy_(torch.tensor([[0.6, 0.8]]))
        sae.b_dec_upper.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[[3.0, 1.0]]])  # f1 = [3, 1]; f2 = relu(3 - 0.5 - 0.5) = 2; f1_hat = [1.7, 1.6]
    mask = torch.ones(1, 1, dtype=torch.bool)
    out = sae.training_forward(x, mask, {"beta1": 0.1, "beta2": 0.2, "upper_mse": 2.0})
    losses = {name: value.item() for name, value in out.losses.items()}
    assert losses["mse"] == pytest.approx(0.0)  # the lower level reconstructs x exactly
    assert losses["l1_lower"] == pytest.approx(0.1 * 4.0)
    assert losses["mse_upper"] == pytest.approx(2.0 * ((3 - 1.7) ** 2 + (1 - 1.6) ** 2))  # against f1, not x
    assert losses["l1_upper"] == pytest.approx(0.2 * 2.0)
    assert out.metrics["L0_lower"] == 2 and out.metrics["L0_upper"] == 1
    torch.testing.assert_close(out.feature_acts, torch.tensor([[[3.0, 1.0, 2.0]]]))


def test_phase_one_trains_no_upper_term_and_shows_the_upper_level_silent():
    sae = _randomised(_sae())
    out = sae.training_forward(
        torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), {"beta1": 1.0, "beta2": 0.0, "upper_mse": 0.0}
    )
    assert set(out.losses) == {"mse", "l1_lower"}
    assert out.metrics["L0_upper"] == 0 and (out.feature_acts[..., 3:] == 0).all()


def test_decode_of_encode_is_forward_and_the_lower_reconstruction():
    sae = _randomised(_sae(d_in=6, d_sae=10, d_lower=6))
    x = torch.randn(3, 5, 6)
    with torch.no_grad():
        latents = sae.encode(x)
        torch.testing.assert_close(sae.decode(latents), sae(x), rtol=0, atol=0)
        lower = latents[..., :6]
        torch.testing.assert_close(sae(x), (lower @ sae.W_dec_lower + sae.b_dec) / sae.activation_scale)
        # Upper latents reach x through both decoders: their W_dec rows are W_dec_upper @ W_dec_lower.
        upper = latents[..., 6:]
        through_both = sae.decode_upper(upper) - sae.decode_upper(torch.zeros_like(upper))
        torch.testing.assert_close(through_both, upper @ sae.W_dec[6:] / sae.activation_scale)


def test_save_and_load_through_sae_lens_round_trip(tmp_path):
    sae = _randomised(_sae(d_in=6, d_sae=10, d_lower=6))
    sae.save_model(tmp_path / "hier")
    loaded = SAE.load_from_disk(str(tmp_path / "hier")).eval()
    assert isinstance(loaded, HierarchicalSAE) and loaded.cfg.d_lower == 6
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded(x), sae(x))
        assert torch.equal(loaded.b_dec_upper, sae.b_dec_upper)


def _two_level_data(n_windows: int = 48, seq: int = 17, d_in: int = 24, seed: int = 0) -> SequenceActivations:
    """x = sum of active lower directions; lower directions fire only in fixed groups of three (the planted upper
    level: 4 concepts, each switching on its own 3 of 12 lower directions), plus a little noise."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(12, d_in, generator=generator)
    directions /= directions.norm(dim=-1, keepdim=True)
    concept_members = torch.zeros(4, 12)
    for concept in range(4):
        concept_members[concept, 3 * concept : 3 * concept + 3] = 1.0
    concepts = (torch.rand(n_windows, seq, 4, generator=generator) < 0.3).float()
    strength = 1 + torch.rand(n_windows, seq, 12, generator=generator)
    lower = (concepts @ concept_members) * strength
    x = lower @ directions + 0.01 * torch.randn(n_windows, seq, d_in, generator=generator)
    mask = torch.ones(n_windows, seq, dtype=torch.bool)
    mask[:, 0] = False
    return SequenceActivations(x, mask, scale=math.sqrt(d_in) / x[mask].norm(dim=-1).mean().item())


def test_both_levels_stay_alive_on_a_planted_two_level_structure():
    torch.manual_seed(0)
    sae = _sae(d_in=24, d_sae=48, d_lower=32)
    options = HierarchicalOptions(beta1=0.3, beta2=0.6)
    assert options.beta1 < options.beta2
    data = _two_level_data()
    history = train_in_phases(
        sae, hierarchical_phases(options, data), data, tokens=40_000, lr=1e-2, batch_windows=16, seed=0
    )
    last = history.rows[-1]
    assert last["phase"] == "joint"
    assert last["L0_lower"] > 1 and last["L0_upper"] > 0.5, last
    assert last["alive_upper"] > 0.05 and last["EV_upper"] > 0.5, last
    assert last["EV"] > 0.8 and last["mechanism_share"] == last["EV_upper"], last
