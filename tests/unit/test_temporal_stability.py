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


def test_weighted_jaccard_by_hand():
    # Two latents over 4 positions: f = (2,0), (1,1), (0,1), (0,0)
    latents = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]).view(1, 4, 2).repeat(2, 1, 1)
    metrics = _score(latents, dense_threshold=1.0).metrics
    # pairs: min/max sums 1/3, 1/2, 0/1 -> mean (1/3 + 1/2 + 0) / 3
    assert metrics.jaccard.weighted_jaccard == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)


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


# --- smoothness (T-SAE's lipschitz_cont) ---------------------------------------------------------------------------

# Two windows of three scored positions, two latents, inputs in the plane.
# Window 1: ||x1 - x0|| = ||(3, 4)|| = 5, ||x2 - x1|| = ||(0, 2)|| = 2.
#   latent 0 = 0, 1, 3: ratios 1/5, 2/2 -> max 1.0;  latent 1 = 2, 1, 1: ratios 1/5, 0/2 -> max 0.2.
#   Both active: window mean (1.0 + 0.2) / 2 = 0.6.
# Window 2: ||x1 - x0|| = ||(0, 1)|| = 1, ||x2 - x1|| = ||(6, 8)|| = 10.
#   latent 0 never fires (not counted); latent 1 = 0, 0.5, 4: ratios 0.5/1, 3.5/10 -> max 0.5. Window mean 0.5.
# Mean over windows (0.6 + 0.5) / 2 = 0.55. (Pooling all latent-windows would give 1.7 / 3; the largest jump over
# the largest input step 0.35 in window 2; both differ.)
HAND_INPUTS = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 1.0], [6.0, 9.0]]])
HAND_LATENTS = torch.tensor([[[0.0, 2.0], [1.0, 1.0], [3.0, 1.0]], [[0.0, 0.0], [0.0, 0.5], [0.0, 4.0]]])


def _smoothness_score(latents, inputs, units=None, split=None, **overrides):
    cfg = TemporalStabilityConfig(**{"calibration_windows": 1, "position_threshold": 1.0, **overrides})
    batches = [
        (latents[i : i + 1], inputs[i : i + 1], inputs[i : i + 1], *([] if units is None else [units]))
        for i in range(latents.shape[0])
    ]
    return score_stability(iter(batches), latents.shape[-1], cfg, seed=0, matryoshka_split=split)


def test_smoothness_by_hand_on_two_windows():
    smoothness = _smoothness_score(HAND_LATENTS, HAND_INPUTS).metrics.smoothness
    assert smoothness.lipschitz == pytest.approx(0.55)
    assert smoothness.identical_input_pairs == 0
    assert smoothness.lipschitz_high_level is None and smoothness.lipschitz_low_level is None


def test_smoothness_reads_latents_in_raw_units():
    # An SAE that encodes 2x (unit decoder rows) sees input steps twice as long: f / 2 is the raw-unit latent.
    smoothness = _smoothness_score(HAND_LATENTS, HAND_INPUTS, units=torch.tensor(0.5)).metrics.smoothness
    assert smoothness.lipschitz == pytest.approx(0.55 / 2)
    # Per latent (decoder rows of norms 1 and 3): window 1 (1.0 + 3 * 0.2) / 2, window 2: 3 * 0.5.
    smoothness = _smoothness_score(HAND_LATENTS, HAND_INPUTS, units=torch.tensor([1.0, 3.0])).metrics.smoothness
    assert smoothness.lipschitz == pytest.approx((0.8 + 1.5) / 2)
    # Per token (an SAE normalising each token): the same units at every position give the same number.
    per_token = torch.tensor([1.0, 3.0]).expand(1, 3, 2)
    smoothness = _smoothness_score(HAND_LATENTS, HAND_INPUTS, units=per_token).metrics.smoothness
    assert smoothness.lipschitz == pytest.approx((0.8 + 1.5) / 2)


def test_smoothness_ignores_the_dense_exclusion():
    # Latent 1 fires on 5 of 6 tokens: excluded as dense from Jaccard and ACF, still counted in smoothness.
    metrics = _smoothness_score(HAND_LATENTS, HAND_INPUTS, dense_threshold=0.5, calibration_windows=2).metrics
    assert metrics.exclusions.n_dense_excluded == 1
    assert metrics.smoothness.lipschitz == pytest.approx(0.55)


def test_identical_adjacent_inputs_are_skipped_not_divided_by():
    # A repeated token at an early layer: x1 == x0. A sequence-aware SAE may still change its latents there;
    # that pair is skipped, the window's other pair decides: |4 - 1| / ||(0, 3)|| = 1.
    inputs = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [1.0, 4.0]], [[0.0, 0.0], [3.0, 4.0], [3.0, 6.0]]])
    latents = torch.tensor([[[0.0], [1.0], [4.0]], [[0.0], [1.0], [3.0]]])  # window 2: max(1/5, 2/2) = 1
    smoothness = _smoothness_score(latents, inputs).metrics.smoothness
    assert math.isfinite(smoothness.lipschitz) and math.isfinite(smoothness.lipschitz_shuffled)
    assert smoothness.lipschitz == pytest.approx(1.0)
    assert smoothness.identical_input_pairs == 1
    # A window of one repeated token has no pair to read: it is left out, the rest still counts.
    repeated = torch.cat([inputs, torch.ones(1, 3, 2)])
    fired = torch.cat([latents, torch.tensor([[[0.0], [2.0], [5.0]]])])
    smoothness = _smoothness_score(fired, repeated).metrics.smoothness
    assert smoothness.lipschitz == pytest.approx(1.0)
    assert smoothness.identical_input_pairs == 3


def test_matryoshka_split_reports_each_part_by_hand():
    # High-level part = latent 0: window 1 only (1.0; it never fires in window 2). Low-level = latent 1: 0.2, 0.5.
    smoothness = _smoothness_score(HAND_LATENTS, HAND_INPUTS, split=1).metrics.smoothness
    assert smoothness.lipschitz == pytest.approx(0.55)
    assert smoothness.lipschitz_high_level == pytest.approx(1.0)
    assert smoothness.lipschitz_low_level == pytest.approx(0.35)
    assert smoothness.lipschitz_high_level_shuffled is not None and smoothness.lipschitz_low_level_shuffled is not None


def test_matryoshka_split_is_read_from_t_sae_and_sae_lens_configs():
    from sae_lens.saes.matryoshka_batchtopk_sae import MatryoshkaBatchTopKTrainingSAEConfig

    from custom_saes.t_sae import TSAEConfig
    from tests.helpers import tiny_sae
    from tsae_evals.evals.temporal_stability.smoothness import matryoshka_split

    assert matryoshka_split(TSAEConfig(d_in=8, d_sae=40, high_level_fraction=0.2)) == 8
    assert (
        matryoshka_split(MatryoshkaBatchTopKTrainingSAEConfig(d_in=8, d_sae=64, matryoshka_widths=[16, 32, 64])) == 16
    )
    assert matryoshka_split(tiny_sae().cfg) is None


def test_raw_units_of_custom_and_sae_lens_saes():
    from types import SimpleNamespace

    from sae_lens import TopKSAE, TopKSAEConfig

    from tests.helpers import tiny_sae
    from tsae_evals.evals.temporal_stability.smoothness import RawUnits, input_scale

    x = torch.tensor([[[3.0, 4.0], [0.0, 2.0]]])
    decoder = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # rows of norms 1 and 3
    custom = SimpleNamespace(activation_scale=torch.tensor(2.0), W_dec=decoder, cfg=SimpleNamespace(d_sae=2))
    assert float(input_scale(custom, x)) == 2.0
    assert RawUnits(custom)(x).tolist() == pytest.approx([0.5, 1.5])  # ||W_dec_i|| / s
    assert RawUnits(tiny_sae())(x).tolist() == pytest.approx([1.0] * 64)  # unit rows, raw input
    rescaled = SimpleNamespace(
        W_dec=decoder, cfg=SimpleNamespace(d_sae=2, normalize_activations="constant_norm_rescale")
    )
    assert RawUnits(rescaled)(x)[0, :, 1].tolist() == pytest.approx([3 * 5 / 2**0.5, 3 * 2 / 2**0.5])
    topk = TopKSAE(TopKSAEConfig(d_in=2, d_sae=2, k=1, rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        topk.W_dec.copy_(decoder)
    assert RawUnits(topk)(x).tolist() == [1.0, 1.0]  # decode divides by the norms


def test_random_sae_smoothness_is_reported_beside_the_shuffle_null():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8, 20, 6, generator=generator).cumsum(1)  # a random walk: small adjacent steps
    latents = torch.relu(inputs @ torch.randn(6, 16, generator=generator) - 1)
    smoothness = _score(latents, inputs, dense_threshold=1.0).metrics
    assert smoothness.random_sae is not None and smoothness.random_sae.lipschitz > 0
    assert smoothness.smoothness.lipschitz > 0 and smoothness.smoothness.lipschitz_shuffled > 0


def _reference_lipschitz(x: torch.Tensor, f: torch.Tensor) -> float:
    """The authors' `lipschitz_cont` for one window, written as their loops: latents with a non-zero sum, the
    ratio per step, its max over steps, the mean over latents."""
    f = f[:, f.sum(0) != 0].double()
    ratios = torch.zeros(f.shape[0] - 1, f.shape[1], dtype=torch.float64)
    for time in range(1, f.shape[0]):
        ratios[time - 1] = (f[time] - f[time - 1]).abs() / torch.linalg.vector_norm(x[time] - x[time - 1]).double()
    return float(ratios.max(dim=0)[0].mean())


def test_smoothness_equals_the_reference_loops_averaged_over_windows():
    generator = torch.Generator().manual_seed(4)
    inputs = torch.randn(6, 15, 5, generator=generator)
    latents = torch.relu(torch.randn(6, 15, 12, generator=generator) - 1.0)
    result = _score(latents, inputs, batch=4, dense_threshold=1.0)
    windows = [_reference_lipschitz(x, f) for x, f in zip(inputs, latents, strict=True)]
    assert result.metrics.smoothness.lipschitz == pytest.approx(sum(windows) / len(windows), rel=1e-6)
    high = [_reference_lipschitz(x, f[:, :3]) for x, f in zip(inputs, latents, strict=True)]
    low = [_reference_lipschitz(x, f[:, 3:]) for x, f in zip(inputs, latents, strict=True)]
    split = score_stability(
        iter([(latents, inputs, inputs)]), 12, TemporalStabilityConfig(position_threshold=1.0), 0, matryoshka_split=3
    ).metrics.smoothness
    assert split.lipschitz_high_level == pytest.approx(sum(high) / len(high), rel=1e-6)
    assert split.lipschitz_low_level == pytest.approx(sum(low) / len(low), rel=1e-6)


def test_t_sae_reports_its_high_and_low_level_smoothness_through_the_runner(tiny_model, corpus_file, tmp_path, device):
    import json

    from tests.contract.test_architectures import build
    from tsae_evals.runner import RunRequest, run

    sae_dir = tmp_path / "t_sae"
    build("tsae_t_sae").save_model(sae_dir)  # input scale 1.7, 20% high-level split
    request = RunRequest(
        sae_specs=[str(sae_dir)],
        eval_names="temporal_stability",
        dataset=str(corpus_file),
        n_windows=8,
        context_size=32,
        batch_size=4,
        results_dir=tmp_path / "results",
        allow_degenerate=True,
        device=device,
    )
    (outcome,) = run(request, model_loader=lambda *_: tiny_model)
    assert outcome.status == "ok", outcome.message
    smoothness = json.loads(outcome.path.read_text())["eval_result_metrics"]["smoothness"]
    for key in ("lipschitz", "lipschitz_high_level", "lipschitz_low_level", "lipschitz_shuffled"):
        assert math.isfinite(smoothness[key]) and smoothness[key] > 0, key
    assert {"smoothness", "smoothness_high", "smoothness_random_sae"} <= set(outcome.summary)


def test_streaming_scores_agree_between_cpu_and_the_test_device(device):
    """Run with `--device cuda`: the same batches scored on CPU and on the device give the same metrics."""
    if device == "cpu":
        pytest.skip("needs --device other than cpu")
    from tsae_evals.evals.feature_lifetimes.config import FeatureLifetimesConfig
    from tsae_evals.evals.feature_lifetimes.stream import score_lifetimes

    generator = torch.Generator().manual_seed(7)
    switches = torch.rand(24, 40, 96, generator=generator) < torch.linspace(0.02, 0.4, 96)
    latents = (torch.cumsum(switches.long(), 1) % 2).float() * torch.rand(24, 40, 96, generator=generator)
    inputs = torch.randn(24, 40, 16, generator=generator).cumsum(1)
    cfg = TemporalStabilityConfig(calibration_windows=8, min_firings=5)
    results = {}
    for where in ("cpu", device):
        batches = [(t[i : i + 5].to(where) for t in (latents, inputs, inputs)) for i in range(0, 24, 5)]
        stability = score_stability((tuple(b) for b in batches), 96, cfg, seed=0, matryoshka_split=20)
        trace = (latents[i : i + 5].to(where) for i in range(0, 24, 5))
        lifetimes = score_lifetimes(trace, 96, FeatureLifetimesConfig(), 0)
        results[where] = _flat({"s": stability.model_dump(), "l": lifetimes.model_dump()})
    assert results["cpu"].keys() == results[device].keys()
    for key, value in results["cpu"].items():
        other = results[device][key]
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(other), key
        else:
            assert other == pytest.approx(value, rel=5e-5, abs=1e-9), key


def _flat(value, prefix=""):
    """Nested dicts and lists -> {"a.b.0": scalar}."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}
