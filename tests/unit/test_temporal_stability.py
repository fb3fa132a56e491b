"""temporal_stability against values derived by hand and against a plain dense computation."""

from __future__ import annotations

import math

import pytest
import torch

from tsae_evals.evals.temporal_stability.config import TemporalStabilityConfig
from tsae_evals.evals.temporal_stability.stream import score_stability


def _score(latents: torch.Tensor, inputs: torch.Tensor | None = None, batch: int = 4, **overrides):
    # Synthetic windows repeat one pattern, which makes every latent "position-tracking": that exclusion is tested
    # on its own below and off (threshold 1) elsewhere.
    cfg = TemporalStabilityConfig(**{"calibration_windows": 2, "position_threshold": 1.0, **overrides})
    inputs = torch.randn(*latents.shape[:2], 3) if inputs is None else inputs
    batches = [
        (latents[i : i + batch], inputs[i : i + batch], inputs[i : i + batch]) for i in range(0, len(latents), batch)
    ]
    return score_stability(iter(batches), latents.shape[-1], cfg, seed=0)


def test_runs_of_five_give_hand_derived_jaccard_and_cosine():
    # One latent on for 5 tokens, off for 5, twice: 8 on-on pairs, 3 on/off transitions, 8 empty pairs skipped.
    pattern = torch.tensor(([1.0] * 5 + [0.0] * 5) * 2)
    latents = pattern.view(1, 20, 1).repeat(3, 1, 1)
    result = _score(latents, dense_threshold=1.0)
    assert result.metrics.jaccard.adjacent_jaccard == pytest.approx(8 / 11)
    # cosine is defined only where both vectors are non-zero: the 8 on-on pairs, each exactly 1
    assert result.metrics.cosine.successive_cosine == pytest.approx(1.0)


def test_alternating_latent_has_lag1_autocorrelation_minus_one_plus_one_over_t():
    # x_t alternates 0/1 over T = 40: centred values are +-1/2, so c0 = T/4 and c1 = -(T-1)/4.
    T = 40
    trace = torch.tensor([float(t % 2) for t in range(T)])
    latents = trace.view(1, T, 1).repeat(2, 1, 1)
    result = _score(latents, dense_threshold=1.0, max_lag=2)
    assert result.lags[0].mean == pytest.approx(-(T - 1) / T)
    # lag 2 pairs equal values: c2 = (T-2)/4, so r2 = (T-2)/T
    assert result.lags[1].mean == pytest.approx((T - 2) / T)
    assert result.metrics.autocorrelation.n_latents_measured == 1


def test_latent_below_min_firings_is_not_measured_and_coverage_says_so():
    T = 40
    frequent = torch.tensor([float(t % 2) for t in range(T)])
    rare = torch.zeros(T)
    rare[[3, 17]] = 1.0
    latents = torch.stack([frequent, rare], -1).view(1, T, 2).repeat(2, 1, 1)
    result = _score(latents, dense_threshold=1.0)
    assert result.metrics.autocorrelation.n_latents_measured == 1
    assert result.metrics.autocorrelation.coverage == pytest.approx(0.5)


def test_dense_latents_are_excluded_and_counted():
    torch.manual_seed(0)
    latents = (torch.rand(8, 30, 6) < 0.05).float()
    latents[..., 0] = 1.0  # fires everywhere: would make every adjacent pair overlap
    result = _score(latents, dense_threshold=0.1)
    assert result.metrics.exclusions.n_dense_excluded == 1
    assert result.dense_latents == [0]
    assert result.metrics.jaccard.adjacent_jaccard < 0.5


def test_shuffle_null_gives_no_excess_on_iid_latents():
    torch.manual_seed(1)
    latents = torch.rand(64, 64, 50) * (torch.rand(64, 64, 50) < 0.3)
    result = _score(latents, batch=16, dense_threshold=1.0)
    assert abs(result.metrics.jaccard.adjacent_jaccard_excess) < 0.02
    assert abs(result.metrics.autocorrelation.lag1_excess) < 0.02
    assert abs(result.metrics.cosine.successive_cosine_excess) < 0.02


def test_persistent_latents_have_positive_excess():
    torch.manual_seed(2)
    # each latent switches state with probability 0.1 per token: long runs, strongly ordered
    switches = torch.rand(16, 80, 20) < 0.1
    latents = (torch.cumsum(switches.long(), dim=1) % 2).float()
    result = _score(latents, dense_threshold=1.0)
    assert result.metrics.jaccard.adjacent_jaccard_excess > 0.5
    assert result.metrics.autocorrelation.lag1_excess > 0.5


def _dense_reference(latents: torch.Tensor, min_firings: int, max_lag: int):
    """Straightforward per-window, per-latent loops: what the streaming version must reproduce."""
    jaccards, per_latent = [], {}
    for window in latents:
        for t in range(window.shape[0] - 1):
            a, b = (
                set((window[t] > 0).nonzero().flatten().tolist()),
                set((window[t + 1] > 0).nonzero().flatten().tolist()),
            )
            if a | b:
                jaccards.append(len(a & b) / len(a | b))
        for i in range(window.shape[1]):
            x = window[:, i].double()
            if int((x > 0).sum()) < min_firings:
                continue
            c = x - x.mean()
            c0 = float((c * c).sum())
            if c0 == 0:
                continue
            per_latent.setdefault(i, []).append([float((c[:-k] * c[k:]).sum()) / c0 for k in range(1, max_lag + 1)])
    curves = torch.tensor([torch.tensor(v).mean(0).tolist() for v in per_latent.values()])
    return sum(jaccards) / len(jaccards), curves.mean(0), curves.median(0).values


def test_streaming_equals_dense_computation():
    torch.manual_seed(3)
    latents = torch.rand(10, 32, 12) * (torch.rand(10, 32, 12) < torch.linspace(0.05, 0.6, 12))
    result = _score(latents, batch=3, dense_threshold=1.0, min_firings=5, max_lag=4)
    jaccard, mean_curve, median_curve = _dense_reference(latents, min_firings=5, max_lag=4)
    assert result.metrics.jaccard.adjacent_jaccard == pytest.approx(jaccard)
    assert [row.mean for row in result.lags] == pytest.approx(mean_curve.tolist())
    assert [row.median for row in result.lags] == pytest.approx(median_curve.tolist())


def test_explained_variance_and_l0_on_known_reconstruction():
    latents = torch.zeros(4, 10, 3)
    latents[:, :, 0] = 1.0
    inputs = torch.randn(4, 10, 5)
    batches = [(latents, inputs, torch.zeros_like(inputs))]
    result = score_stability(iter(batches), 3, TemporalStabilityConfig(dense_threshold=1.0), seed=0)
    flat = inputs.reshape(-1, 5).double()
    expected = 1 - float(flat.pow(2).sum()) / float((flat - flat.mean(0)).pow(2).sum())
    assert result.metrics.reference.explained_variance == pytest.approx(expected)
    assert result.metrics.reference.l0 == pytest.approx(1.0)
    assert math.isnan(result.metrics.autocorrelation.lag1_mean)  # constant latent: no measurable window


def test_weighted_jaccard_and_activation_jump_by_hand():
    # Two latents over 4 positions: f = (2,0), (1,1), (0,1), (0,0)
    latents = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]).view(1, 4, 2).repeat(2, 1, 1)
    metrics = _score(latents, dense_threshold=1.0).metrics
    # pairs: min/max sums 1/3, 1/2, 0/1 -> mean (1/3 + 1/2 + 0) / 3
    assert metrics.jaccard.weighted_jaccard == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
    # latent 0: max jump 1 (2->1, 1->0) over peak 2 = 0.5; latent 1: jumps 1 over peak 1 = 1
    assert metrics.smoothness.activation_jump == pytest.approx(0.75)


def test_position_tracking_latents_are_excluded_and_counted():
    generator = torch.Generator().manual_seed(0)
    positions = torch.linspace(0.1, 1.0, 30).view(1, 30, 1).repeat(40, 1, 1)
    noise = (torch.rand(40, 30, 1, generator=generator) < 0.05).float()
    latents = torch.cat([positions + 0.01 * torch.rand(40, 30, 1, generator=generator), noise], dim=-1)
    result = _score(latents, dense_threshold=1.0, position_threshold=0.5, calibration_windows=40, batch=40)
    exclusions = result.metrics.exclusions
    assert exclusions.n_position_excluded == 1 and exclusions.n_dense_excluded == 0
    assert result.dense_latents == [0]


def test_random_sae_baseline_runs_at_the_evaluated_l0():
    generator = torch.Generator().manual_seed(0)
    latents = (torch.rand(8, 20, 16, generator=generator) < 0.25).float()
    inputs = torch.randn(8, 20, 6, generator=generator)
    metrics = _score(latents, inputs, dense_threshold=1.0).metrics
    assert metrics.random_sae is not None
    assert metrics.random_sae.k == round(float(latents[:4].sum(-1).mean()))  # the first batch calibrates
    # i.i.d. inputs: the random SAE's latents are as unordered as its shuffle null
    assert abs(metrics.random_sae.adjacent_jaccard_excess) < 0.05
