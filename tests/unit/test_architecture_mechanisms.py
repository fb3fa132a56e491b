"""Each architecture's defining mechanism does what its docstring says, on inputs whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch
from sae_lens.saes.sae import SAEMetadata

from custom_saes.adaptive_variance import AdaptiveVarianceSAE, AdaptiveVarianceSAEConfig
from custom_saes.hierarchical import HierarchicalSAE, HierarchicalSAEConfig, cosine_groups, group_l21
from custom_saes.lifecycle import FeatureLifecycleTracker
from custom_saes.runs import run_lengths
from custom_saes.t_sae import TSAE, TSAEConfig, adjacent_info_nce, batch_top_k
from custom_saes.temporal_consistency import consistency_loss
from custom_saes.temporal_context import TemporalContextSAE, TemporalContextSAEConfig
from custom_saes.temporal_lstm import TemporalLSTMSAE, TemporalLSTMSAEConfig
from custom_saes.training.activations import SequenceActivations
from custom_saes.training.loop import Phase, constant, train_in_phases
from tests import helpers

D = helpers.D_MODEL


def _metadata() -> SAEMetadata:
    return SAEMetadata(hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME)


def _synthetic_activations(n_windows: int = 8, seq: int = 9, seed: int = 0) -> SequenceActivations:
    x = torch.randn(n_windows, seq, D, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(n_windows, seq, dtype=torch.bool)
    mask[:, 0] = False
    return SequenceActivations(x.to(torch.bfloat16), mask, scale=math.sqrt(D) / x[mask].norm(dim=-1).mean().item())


# --- temporal LSTM: lifecycle tracker and the static bridge ---------------------------------------------------


def test_lifecycle_tracker_counts_births_deaths_and_lifetimes_on_a_known_trace():
    trace = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=torch.float)  # runs of 2, 1 (complete) and 3 (censored)
    acts = torch.stack([trace, 1 - trace], dim=-1)  # latent 1: runs of 2 (complete), 1 (complete)
    tracker = FeatureLifecycleTracker(d_sae=2, max_lifetime=8)
    tracker.observe(acts)
    assert tracker.births.tolist() == [3, 2]
    assert tracker.deaths.tolist() == [2, 2]
    assert tracker.censored_runs.tolist() == [1, 0]
    assert tracker.lifetime_histogram[1:4].tolist() == [2, 2, 0]  # lengths 1,2 (latent 0) and 2,1 (latent 1)
    torch.testing.assert_close(tracker.mean_lifetime(), torch.tensor([1.5, 1.5]))


def test_run_lengths_of_runs_of_exactly_five():
    active = torch.zeros(1, 20, 1, dtype=torch.bool)
    active[0, 2:7, 0] = active[0, 10:15, 0] = True
    runs = run_lengths(active)
    assert runs.length.tolist() == [5, 5] and runs.start.tolist() == [2, 10] and not runs.right_censored.any()


def _lstm_sae() -> TemporalLSTMSAE:
    return TemporalLSTMSAE(
        TemporalLSTMSAEConfig(d_in=D, d_sae=64, memory_window=4, lstm_hidden=8, metadata=_metadata())
    )


def test_lstm_sae_tracks_the_lifecycle_of_its_own_latents():
    sae = _lstm_sae().eval()
    tracker = sae.track_lifecycle()
    x = torch.randn(2, 10, D)
    with torch.no_grad():
        acts = sae.encode(x)
    active = acts > 0
    first = active[:, 0].sum(0)
    later = (active[:, 1:] & ~active[:, :-1]).sum((0, 1))
    assert torch.equal(tracker.births, first + later)


def test_lstm_sae_seeded_from_a_static_sae_reproduces_it_before_training():
    static = helpers.tiny_sae(d_sae=64)
    sae = _lstm_sae().eval()
    with torch.no_grad():
        sae.activation_scale.fill_(2.5)
        sae.load_static_sae(static)
        x = torch.randn(2, 6, D)
        torch.testing.assert_close(sae(x), static(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(64))


# --- adaptive variance -------------------------------------------------------------------------------------


def _adaptive(**overrides) -> AdaptiveVarianceSAE:
    return AdaptiveVarianceSAE(AdaptiveVarianceSAEConfig(d_in=D, d_sae=16, metadata=_metadata(), **overrides))


def test_global_parameters_are_shared_scalars_and_the_ablation_makes_them_per_latent():
    assert _adaptive().beta.shape == () and _adaptive().theta.shape == ()
    assert _adaptive(per_feature_params=True).beta.shape == (16,)


# The normalisation, its temporal adaptation and the running variance: tests/unit/test_adaptive_variance_seed.py.


# --- temporal context: the three intervention strategies ---------------------------------------------------------


def test_interventions_clamp_where_active_where_the_context_drives_or_either():
    sae = TemporalContextSAE(
        TemporalContextSAEConfig(d_in=D, d_sae=8, context_window=2, context_dim=4, n_patterns=3, metadata=_metadata())
    ).eval()
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(-1.0)
        sae.b_enc[1] = 1.0  # latent 1: always active, never driven by context
        sae.W_pattern.zero_()
        sae.W_pattern[:, 0] = 0.5  # latent 0: driven by every pattern (drive 0.5 < 1: stays inactive)
        sae.W_pattern[:, 1] = -0.1
    x = torch.randn(2, 5, D)
    clamp = sae.intervene(x, [0, 1], value=-3.0, strategy="clamp")
    pattern = sae.intervene(x, [0, 1], value=-3.0, strategy="pattern")
    hybrid = sae.intervene(x, [0, 1], value=-3.0, strategy="hybrid")
    assert clamp.clamped[..., 0].sum() == 0 and clamp.clamped[..., 1].all()
    assert pattern.clamped[..., 0].all() and pattern.clamped[..., 1].sum() == 0
    assert hybrid.clamped.all()
    with torch.no_grad():
        acts = sae.encode(x)
        acts[..., 1] = -3.0
        torch.testing.assert_close(clamp.reconstruction, sae.decode(acts))


# --- hierarchical ------------------------------------------------------------------------------------------


def test_group_l21_and_cosine_grouping_by_hand():
    acts = torch.tensor([[3.0, 4.0, 2.0]])
    assert group_l21(acts, torch.tensor([0, 0, 1])).item() == pytest.approx(5.0 + 2.0)
    directions = torch.tensor([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0]])
    assert cosine_groups(directions, similarity=0.9).tolist() == [0, 0, 1]


def test_hierarchical_phase_two_leaves_the_lower_level_unchanged():
    sae = HierarchicalSAE(HierarchicalSAEConfig(d_in=D, d_sae=48, d_lower=32, metadata=_metadata()))
    lower_before = {
        name: p.detach().clone() for name, p in sae.named_parameters() if "lower" in name or name == "b_dec"
    }
    upper_before = sae.W_enc_upper.detach().clone()
    upper_phase = Phase("upper", 1.0, constant(beta1=0.0, beta2=1.0, upper_mse=1.0), ("upper",))
    train_in_phases(sae, [upper_phase], _synthetic_activations(), tokens=400, lr=1e-2, batch_windows=4, seed=0)
    for name, before in lower_before.items():
        assert torch.equal(dict(sae.named_parameters())[name], before), name
    assert not torch.equal(sae.W_enc_upper, upper_before)


def test_hierarchical_reconstruction_is_the_lower_levels_and_the_upper_reconstructs_the_lower_code():
    sae = HierarchicalSAE(HierarchicalSAEConfig(d_in=D, d_sae=48, d_lower=32, metadata=_metadata())).eval()
    x = torch.randn(4, D)
    with torch.no_grad():
        lower, upper, lower_hat = sae.encode_levels(x)
        torch.testing.assert_close(sae(x), lower @ sae.W_dec_lower + sae.b_dec)
        torch.testing.assert_close(lower_hat, upper @ sae.W_dec_upper + sae.b_dec_upper)


# --- temporal consistency ----------------------------------------------------------------------------------


def test_consistency_loss_is_zero_on_a_constant_sequence_and_matches_a_hand_value():
    mask = torch.ones(1, 6, dtype=torch.bool)
    constant_code = torch.rand(1, 1, 5).expand(1, 6, 5)
    assert consistency_loss(constant_code, mask, window_size=3).item() == pytest.approx(0.0, abs=1e-6)
    # One latent alternating 0, 2: every window of 2 has variance 1; mean squared norm is 2 -> loss 1/2.
    alternating = torch.tensor([0.0, 2.0, 0.0, 2.0])[None, :, None]
    assert consistency_loss(alternating, torch.ones(1, 4, dtype=torch.bool), window_size=2).item() == pytest.approx(0.5)


# --- T-SAE -------------------------------------------------------------------------------------------------


def test_batch_top_k_keeps_k_per_counted_token_on_average():
    pre = torch.rand(2, 5, 10)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[:, 0] = False
    kept = batch_top_k(pre, mask, k=3)
    assert (kept > 0).sum().item() == 3 * 8 and (kept[:, 0] == 0).all()


def test_info_nce_by_hand_with_matching_adjacent_codes_and_orthogonal_negatives():
    # Two sequences of three tokens; each sequence's codes are one one-hot direction: positives match exactly,
    # the other sequence is orthogonal. Each anchor sees its positive (logit 1/T = 2) and the other sequence's 2 codes (logit 0).
    codes = torch.zeros(2, 3, 4)
    codes[0, :, 0] = 1.0
    codes[1, :, 1] = 1.0
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss = adjacent_info_nce(codes, mask, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), rel=1e-5)
    shuffled = adjacent_info_nce(torch.randn(2, 3, 4).abs(), mask, temperature=0.5)
    assert shuffled.item() > loss.item()


def test_t_sae_high_level_prefix_decodes_alone():
    sae = TSAE(TSAEConfig(d_in=D, d_sae=20, high_level_fraction=0.2, metadata=_metadata())).eval()
    acts = torch.rand(3, 20)
    with torch.no_grad():
        expected = acts[:, :4] @ sae.W_dec[:4] + sae.b_dec
        torch.testing.assert_close(sae.decode_high_level(acts), expected)
