"""The lifecycle eval against counts made by hand: births and deaths per position on a hand-built SAE whose active
sets are known, the lifecycle tracker's totals, turnover of independent and persistent latents, and a run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from custom_saes.lifecycle import FeatureLifecycleTracker
from tsae_evals.context import EncodedBatch
from tsae_evals.evals.lifecycle.config import LifecycleConfig
from tsae_evals.evals.lifecycle.stream import score_lifecycle
from tsae_evals.registry import get_eval

ALL_LATENTS = LifecycleConfig(dense_threshold=1.0, bootstrap_samples=50)


def _identity_sae(width: int):
    """A StandardSAE whose latents are the positive part of its input: its active sets are the input's."""
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=width, d_sae=width))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(width))
        sae.W_dec.copy_(torch.eye(width))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def test_births_and_deaths_per_position_on_a_hand_built_sae():
    # Two windows of BOS + 6 positions, two latents. BOS is on for both latents and must not count.
    on = torch.tensor(
        [
            [[1, 0], [1, 1], [0, 0], [0, 1], [1, 0], [1, 0]],  # latent 0: 110011, latent 1: 010100
            [[0, 0], [0, 0], [0, 0], [1, 0], [0, 0], [0, 0]],  # latent 0: 000100
        ],
        dtype=torch.float32,
    )
    bos = torch.ones(2, 1, 2)
    activations = torch.cat([bos, on], 1)
    ctx = SimpleNamespace(seed=0, scored_start=lambda skip: 1 + skip)
    scorer = get_eval("lifecycle").scorer(ctx, ALL_LATENTS)  # type: ignore[misc]
    scorer.add(EncodedBatch.encode(_identity_sae(2), activations))
    result = scorer.finish()
    assert result.positions == [1, 2, 3, 4, 5, 6]
    # births: w0 latent 1 at 2 and 4, latent 0 at 5; w1 latent 0 at 4. The run at the first position is no birth.
    assert result.births == [0.0, 0.5, 0.0, 1.0, 0.5, 0.0]
    # deaths: w0 latent 0 at 3, latent 1 at 3 and 5; w1 latent 0 at 5. The run reaching the end does not die.
    assert result.deaths == [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert result.active == [0.5, 1.0, 0.0, 1.0, 0.5, 0.5]
    # 8 switches over exposure sum_t (a(t-1) + a(t)) / 2 = (1+2)/2 + (2+0)/2 + (0+2)/2 + (2+1)/2 + (1+1)/2 = 6
    turnover = result.metrics.turnover
    assert turnover.turnover == pytest.approx(8 / 6)
    rates = result.metrics.rates
    assert (rates.births_per_token, rates.deaths_per_token) == (pytest.approx(4 / 10), pytest.approx(4 / 10))
    assert rates.active_per_token == pytest.approx(7 / 12)
    assert result.metrics.reference.tokens_evaluated == 12 and result.births_shuffled[0] == 0.0


def test_totals_agree_with_the_lifecycle_tracker_and_a_direct_count():
    trace = torch.rand(9, 17, 5, generator=torch.Generator().manual_seed(3)) < 0.4
    result = score_lifecycle((trace[i : i + 4].float() for i in range(0, 9, 4)), ALL_LATENTS, seed=0)
    tracker = FeatureLifecycleTracker(5)
    tracker.observe(trace.float())
    left_censored = int(trace[:, 0].sum())  # the tracker counts a run at the first position as a birth; we do not
    assert sum(result.births) * 9 == pytest.approx(int(tracker.births.sum()) - left_censored)
    assert sum(result.deaths) * 9 == pytest.approx(int(tracker.deaths.sum()))
    on = trace.double()
    switches = (on[:, 1:] - on[:, :-1]).abs().sum()
    exposure = ((on[:, 1:] + on[:, :-1]) / 2).sum()
    assert result.metrics.turnover.turnover == pytest.approx(float(switches / exposure), rel=1e-12)


def test_independent_latents_turn_over_at_chance_and_persistent_ones_below_it():
    p = 0.2
    independent = torch.rand(300, 60, 4, generator=torch.Generator().manual_seed(0)) < p
    metrics = score_lifecycle([independent.float()], ALL_LATENTS, seed=0).metrics.turnover
    assert metrics.turnover == pytest.approx(2 * (1 - p), abs=0.03)
    assert metrics.turnover_shuffled == pytest.approx(2 * (1 - p), abs=0.03)
    assert metrics.turnover_ratio_low < 1 < metrics.turnover_ratio_high
    # Runs of 6 on, 24 off: 2 switches per 30 positions over 6 active.
    persistent = torch.zeros(40, 60, 1)
    for start in range(3, 60, 30):
        persistent[:, start : start + 6] = 1
    metrics = score_lifecycle([persistent], ALL_LATENTS, seed=0).metrics.turnover
    assert metrics.turnover == pytest.approx(4 / 12)
    assert metrics.turnover_ratio < metrics.turnover_ratio_high < 0.5
    assert metrics.turnover_low == pytest.approx(4 / 12) == metrics.turnover_high  # every window alike


def test_a_dense_latent_is_excluded_and_counted():
    trace = torch.zeros(4, 10, 2)
    trace[:, :, 0] = 1  # always on: dense
    trace[:, 3:5, 1] = 1
    result = score_lifecycle([trace], LifecycleConfig(dense_threshold=0.5, bootstrap_samples=20), seed=0)
    assert result.dense_latents == [0] and result.metrics.exclusions.n_dense_excluded == 1
    assert result.metrics.turnover.turnover == pytest.approx(2 / 2)  # latent 1 alone: born, dies, 2 active
    assert result.metrics.reference.l0 == pytest.approx(1.2)


def test_lifecycle_runs_through_the_analysis_group_with_its_plot(
    tiny_model, sae_dir, corpus_file, tmp_path, device, monkeypatch
):
    from tests.unit.test_hierarchy_eval import only_our_analysis_evals
    from tsae_evals.runner import RunRequest, run

    only_our_analysis_evals(monkeypatch)
    request = RunRequest(
        device=device,
        sae_specs=[str(sae_dir)],
        eval_names="analysis",
        dataset=str(corpus_file),
        n_windows=8,
        context_size=32,
        batch_size=4,
        results_dir=tmp_path,
        plots=True,
    )
    outcomes = {o.eval_name: o for o in run(request, model_loader=lambda *_: tiny_model)}
    assert outcomes["hierarchy"].status == "unavailable"
    lifecycle = outcomes["lifecycle"]
    assert lifecycle.status == "ok", lifecycle.message
    record = json.loads(lifecycle.path.read_text())
    assert record["eval_result_metrics"]["reference"]["tokens_evaluated"] == 8 * 31
    assert record["eval_result_unstructured"]["positions"] == list(range(1, 32))
    assert [p.name for p in lifecycle.plots] == ["local_tiny_sae_eval_results_lifecycle.png"]
    assert lifecycle.plots[0].stat().st_size > 1000
