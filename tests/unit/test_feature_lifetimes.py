"""feature_lifetimes against values derived by hand on synthetic traces; streaming equals a direct count."""

from __future__ import annotations

import math

import pytest
import torch

from tsae_evals.evals.feature_lifetimes.config import FeatureLifetimesConfig
from tsae_evals.evals.feature_lifetimes.stream import LifetimeStatistics, score_lifetimes

CFG = FeatureLifetimesConfig(min_completed_runs=1, min_gaps=2, max_lifetime=32, dense_threshold=1.0)


def _score(trace: torch.Tensor, cfg: FeatureLifetimesConfig = CFG, batch: int = 4):
    return score_lifetimes((trace[i : i + batch] for i in range(0, trace.shape[0], batch)), trace.shape[-1], cfg, 0)


def test_runs_of_exactly_five_have_lifetime_five_and_persistence_by_hand():
    trace = torch.zeros(6, 30, 1)
    for start in (2, 10, 20):
        trace[:, start : start + 5, 0] = 1.0
    result = _score(trace)
    assert result.metrics.lifetimes.mean_lifetime == 5.0
    assert result.metrics.lifetimes.singleton_fraction == 0.0
    # firing rate 15/30: R = 5 * (1 - 0.5)
    assert result.metrics.persistence.persistence_ratio_mean == pytest.approx(2.5)
    assert result.survival[:6] == [1.0] * 5 + [0.0]


def test_independent_firing_gives_geometric_lifetimes_and_chance_persistence():
    p = 0.2
    trace = (torch.rand(400, 100, 3, generator=torch.Generator().manual_seed(0)) < p).float()
    metrics = _score(trace, batch=50).metrics
    assert metrics.lifetimes.mean_lifetime == pytest.approx(1 / (1 - p), abs=0.02)
    assert metrics.persistence.persistence_ratio_mean == pytest.approx(1.0, abs=0.02)
    assert metrics.persistence.persistence_ratio_shuffled_mean == pytest.approx(1.0, abs=0.02)
    assert metrics.lifetimes.singleton_fraction == pytest.approx(1 - p, abs=0.01)
    # Geometric gaps with mean 1/p and sd sqrt(1-p)/p.
    sd, mean = math.sqrt(1 - p) / p, 1 / p
    assert metrics.burstiness.burstiness_mean == pytest.approx((sd - mean) / (sd + mean), abs=0.02)


def test_periodic_latent_burstiness_by_hand():
    # On 5, off 5, six periods per window: 6 x 4 gaps of 1 inside runs and 5 gaps of 6 between them.
    trace = torch.tensor(([1.0] * 5 + [0.0] * 5) * 6)[None, :, None].repeat(3, 1, 1)
    gaps = torch.tensor([1.0] * 24 + [6.0] * 5, dtype=torch.float64)
    mean, sd = gaps.mean().item(), gaps.std(unbiased=False).item()
    assert _score(trace).metrics.burstiness.burstiness_mean == pytest.approx((sd - mean) / (sd + mean), rel=1e-9)


def test_censored_runs_are_counted_not_measured_and_kaplan_meier_by_hand():
    trace = torch.zeros(3, 8, 1)
    trace[0, 1, 0] = 1.0  # completed run of 1
    trace[1, 2:5, 0] = 1.0  # completed run of 3
    trace[2, 6:8, 0] = 1.0  # right-censored run of 2
    trace[2, 0, 0] = 1.0  # left-censored run of 1
    result = _score(trace)
    censoring = result.metrics.censoring
    assert (censoring.completed_runs, censoring.right_censored_runs, censoring.left_censored_runs) == (2, 1, 1)
    assert result.metrics.lifetimes.mean_lifetime == 2.0
    # at risk at L=1: 3 runs, 1 ends -> 2/3; L=2: 2 at risk, none end; L=3: 1 at risk, it ends -> 0.
    assert result.survival[:4] == pytest.approx([1.0, 2 / 3, 2 / 3, 0.0])


def test_streaming_equals_a_direct_count_and_does_not_depend_on_batching():
    trace = (torch.rand(9, 17, 5, generator=torch.Generator().manual_seed(3)) < 0.4).bool()
    stats = LifetimeStatistics(5, 32)
    for i in range(0, 9, 2):
        stats.add(trace[i : i + 2])
    lengths: dict[int, list[int]] = {j: [] for j in range(5)}
    gaps: dict[int, list[int]] = {j: [] for j in range(5)}
    for window in trace:
        for j in range(5):
            positions = window[:, j].nonzero().flatten().tolist()
            gaps[j] += [b - a for a, b in zip(positions, positions[1:], strict=False)]
            run = 0
            for t, on in enumerate(window[:, j].tolist() + [False]):
                if on:
                    run += 1
                    continue
                if run and t - run > 0 and t < window.shape[0]:  # neither left- nor right-censored
                    lengths[j].append(run)
                run = 0
    for j in range(5):
        assert stats.mean_lifetime()[j].item() == pytest.approx(sum(lengths[j]) / len(lengths[j]))
        assert stats.gap_count[j].item() == len(gaps[j])
        assert stats.gap_sum[j].item() == sum(gaps[j])
    # Batching changes the shuffle's draws, never the real trace's statistics.
    by_two, by_nine = _score(trace.float(), batch=2).metrics, _score(trace.float(), batch=9).metrics
    assert by_two.censoring == by_nine.censoring
    assert by_two.lifetimes.mean_lifetime == by_nine.lifetimes.mean_lifetime
    assert by_two.burstiness.burstiness_mean == by_nine.burstiness.burstiness_mean


def test_the_temporal_group_runs_every_temporal_eval_on_the_tiny_model(
    tiny_model, sae_dir, corpus_file, tmp_path, device
):
    import json

    from tsae_evals.runner import RunRequest, run

    request = RunRequest(
        device=device,
        sae_specs=[str(sae_dir)],
        eval_names="temporal",
        dataset=str(corpus_file),
        n_windows=16,
        context_size=48,
        batch_size=4,
        results_dir=tmp_path,
        config_overrides=[
            "context_switch.window_sizes=[1,4]",
            "causal_interventions.start=8",
            "causal_interventions.max_offset=16",
        ],
    )
    outcomes = {o.eval_name: o for o in run(request, model_loader=lambda *_: tiny_model)}
    assert set(outcomes) == {"temporal_stability", "feature_lifetimes", "context_switch", "causal_interventions"}
    assert all(o.status == "ok" for o in outcomes.values()), [o.message for o in outcomes.values()]
    record = json.loads(outcomes["feature_lifetimes"].path.read_text())
    assert record["eval_result_metrics"]["reference"]["tokens_evaluated"] == 16 * 47
    assert "censoring_policy" in record["eval_result_unstructured"]


def test_plots_are_drawn_beside_the_json(tiny_model, sae_dir, corpus_file, tmp_path, device):
    from tsae_evals.runner import RunRequest, run

    request = RunRequest(
        device=device,
        sae_specs=[str(sae_dir)],
        eval_names="temporal_stability,feature_lifetimes",
        dataset=str(corpus_file),
        n_windows=8,
        context_size=48,
        batch_size=4,
        results_dir=tmp_path,
        plots=True,
    )
    outcomes = run(request, model_loader=lambda *_: tiny_model)
    names = sorted(p.name for o in outcomes for p in o.plots)
    assert names == [
        "local_tiny_sae_eval_results_feature_evolution.png",
        "local_tiny_sae_eval_results_lifetimes.png",
        "local_tiny_sae_eval_results_transitions.png",
    ]
    assert all(p.parent == o.path.parent and p.stat().st_size > 1000 for o in outcomes for p in o.plots)


def test_transition_lift_by_hand():
    from tsae_evals.plots import transition_lift

    # Latent 0 on at even t, latent 1 born at every odd t: "1 follows 0" with lift 1 / P(1 born) = 2.
    active = torch.zeros(1, 8, 2, dtype=torch.bool)
    active[0, 0::2, 0] = True
    active[0, 1::2, 1] = True
    lift = transition_lift(active, torch.tensor([0, 1]))
    # pairs t=0..6: latent 0 active at t in {0,2,4,6} (4/7); latent 1 born at t+1 in {1,3,5,7} (4/7); joint 4/7.
    assert lift[0, 1].item() == pytest.approx((4 / 7) / ((4 / 7) * (4 / 7)))
    assert lift[1, 1].item() == 0.0
