"""position_invariance against values derived by hand and a direct numpy computation on the whole array."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tsae_evals.evals.position_invariance.config import PositionInvarianceConfig
from tsae_evals.evals.position_invariance.stream import ChunkStatistics, score_invariance

CFG = PositionInvarianceConfig(min_firings=1, dense_threshold=1.0, second_chunk_size=None, bootstrap_samples=50)


def _score(latents: torch.Tensor, cfg: PositionInvarianceConfig = CFG, batch: int = 4, seed: int = 0):
    batches = (latents[i : i + batch] for i in range(0, latents.shape[0], batch))
    return score_invariance(batches, latents.shape[-1], cfg, seed)


def _rows(result):
    return {row.latent: row for row in result.top_latents}


def test_constant_within_chunks_scores_one_and_alternating_scores_one_third_by_hand():
    # Latent 0: one random level per chunk of 8 (varying across chunks and windows): all variance is between chunks.
    # Latent 1: chunk A alternates 1, 0 and chunk B is silent, in every window. N = 16 per window, mean 1/4:
    # SS_total = 4 - 16/16 = 3; SS_within = 8 x 1/4 (chunk A) + 0 = 2; invariance = 1 - 2/3 = 1/3. Its chance
    # under the shuffle: no variance between windows, so (M - 1) / (n - 1) = 1/15.
    # Latent 2: alternates inside every chunk with equal chunk means: invariance 0.
    # Three extra positions per window fill no chunk of 8 and are not counted (garbage there changes nothing).
    generator = torch.Generator().manual_seed(0)
    latents = torch.zeros(6, 19, 3)
    latents[:, :16, 0] = torch.rand(6, 2, generator=generator).repeat_interleave(8, dim=1) + 0.1
    latents[:, :8:2, 1] = 1.0
    latents[:, :16:2, 2] = 2.0
    latents[:, 16:] = torch.rand(6, 3, 3, generator=generator) * 5
    result = _score(latents)
    rows = _rows(result)
    assert rows[0].invariance == 1.0
    assert rows[1].invariance == pytest.approx(1 / 3, abs=1e-12)
    assert rows[1].invariance_chance == pytest.approx(1 / 15, abs=1e-12)
    assert rows[1].between_window_share == pytest.approx(0.0, abs=1e-12)
    assert rows[2].invariance == pytest.approx(0.0, abs=1e-12)
    assert result.metrics.invariance.mean_invariance == pytest.approx((1 + 1 / 3 + 0) / 3, abs=1e-12)
    assert result.metrics.reference.tokens_evaluated == 6 * 16
    # The shuffle breaks latent 1's chunk structure (its one-third is far above the 1/15 chance value).
    assert rows[1].invariance_shuffled < rows[1].invariance


def _numpy_invariance(latents: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per latent: 1 - within-chunk SS / total SS, and the between-window share, on the whole array at once."""
    b, t, d = latents.shape
    m = t // w
    kept = latents[:, : m * w].astype(np.float64)
    values = kept.reshape(-1, d)
    total = ((values - values.mean(0)) ** 2).sum(0)
    chunks = kept.reshape(b, m, w, d)
    within = ((chunks - chunks.mean(2, keepdims=True)) ** 2).sum((0, 1, 2))
    between_windows = (m * w * (kept.mean(1) - values.mean(0)) ** 2).sum(0)
    return 1 - within / total, between_windows / total


@pytest.mark.parametrize("batch", [1, 2, 4, 9])
def test_streaming_equals_numpy_on_the_whole_array_for_any_batch_split(batch):
    generator = torch.Generator().manual_seed(1)
    on = torch.rand(9, 37, 6, generator=generator) < torch.linspace(0.05, 0.6, 6)
    latents = on.float() * torch.rand(9, 37, 6, generator=generator) * 3
    latents[:4, :, 5] += 2.0  # a latent whose level differs between windows
    for w in (8, 16):
        stats = ChunkStatistics(6, w)
        generator = torch.Generator().manual_seed(0)
        for i in range(0, 9, batch):
            stats.add(latents[i : i + batch], 0.0, generator)
        scores = stats.scores()
        invariance, rho = _numpy_invariance(latents.numpy(), w)
        np.testing.assert_allclose(scores.invariance.numpy(), invariance, rtol=0, atol=1e-6)
        np.testing.assert_allclose(scores.between_window_share.numpy(), rho, rtol=0, atol=1e-6)


def test_chance_value_is_the_mean_of_the_shuffled_score_over_many_shuffles():
    # Independent check of the exact expectation rho + (1 - rho) (M - 1) / (n - 1): average numpy shuffles.
    generator = torch.Generator().manual_seed(2)
    latents = (torch.rand(5, 24, 2, generator=generator) < 0.3).float() * torch.rand(5, 24, 2, generator=generator)
    latents[:2, :, 1] += 1.0
    stats = ChunkStatistics(2, 8)
    stats.add(latents, 0.0, torch.Generator().manual_seed(0))
    chance = stats.scores().chance.numpy()
    rng = np.random.default_rng(0)
    values = latents.numpy()
    draws = [_numpy_invariance(rng.permuted(values, axis=1), 8)[0] for _ in range(4000)]
    np.testing.assert_allclose(np.mean(draws, 0), chance, atol=5e-3)


def test_shuffle_null_of_iid_latents_matches_chance_and_shows_no_excess():
    generator = torch.Generator().manual_seed(3)
    latents = (torch.rand(64, 32, 8, generator=generator) < 0.2).float()
    cfg = CFG.model_copy(update={"second_chunk_size": 16, "bootstrap_samples": 200})
    metrics = _score(latents, cfg, batch=16).metrics
    scores = metrics.invariance
    assert scores.mean_invariance == pytest.approx(scores.mean_invariance_chance, abs=0.01)
    assert scores.mean_invariance_shuffled == pytest.approx(scores.mean_invariance_chance, abs=0.01)
    assert abs(scores.invariance_excess) < 0.02
    assert scores.mean_invariance_ci_low <= scores.mean_invariance <= scores.mean_invariance_ci_high
    assert metrics.second_scale is not None and metrics.second_scale.chunk_size == 16
    assert abs(metrics.second_scale.invariance_excess) < 0.02


def test_persistent_latents_exceed_the_null_and_dense_and_rare_latents_are_excluded():
    generator = torch.Generator().manual_seed(4)
    # Latent 0 switches state every 8 positions at random; latent 1 fires everywhere (dense); latent 2 fires once.
    latents = torch.zeros(16, 32, 3)
    latents[:, :, 0] = (torch.rand(16, 4, generator=generator) < 0.3).float().repeat_interleave(8, dim=1)
    latents[:, :, 1] = 1.0 + torch.rand(16, 32, generator=generator)
    latents[0, 3, 2] = 1.0
    cfg = CFG.model_copy(update={"dense_threshold": 0.5, "min_firings": 2})
    result = _score(latents, cfg)
    metrics = result.metrics
    assert metrics.exclusions.n_dense_excluded == 1 and result.dense_latents == [1]
    assert metrics.exclusions.n_latents_measured == 1
    assert metrics.exclusions.coverage == pytest.approx(1 / 2)
    assert metrics.invariance.mean_invariance == 1.0
    assert metrics.invariance.mean_invariance_shuffled < 0.5
    assert metrics.invariance.fraction_above_null == 1.0
    assert [row.latent for row in result.top_latents] == [0]


def test_windows_too_short_for_two_chunks_are_refused_before_any_model_loads():
    from tsae_evals.context import RunShape
    from tsae_evals.errors import UsageError
    from tsae_evals.evals.position_invariance.eval import _check

    _check(RunShape(8, 33, True), PositionInvarianceConfig())  # 32 scored positions: two chunks of 16
    with pytest.raises(UsageError):
        _check(RunShape(8, 32, True), PositionInvarianceConfig())


def test_runs_on_the_tiny_model_and_draws_its_histogram(tiny_model, sae_dir, corpus_file, tmp_path, device):
    from tsae_evals.runner import RunRequest, run

    request = RunRequest(
        device=device,
        sae_specs=[str(sae_dir)],
        eval_names="position_invariance",
        dataset=str(corpus_file),
        n_windows=16,
        context_size=48,
        batch_size=4,
        results_dir=tmp_path,
        plots=True,
    )
    (outcome,) = run(request, model_loader=lambda *_: tiny_model)
    assert outcome.status == "ok", outcome.message
    assert {"invariance", "invariance_null", "invariance_excess"} <= set(outcome.summary)
    assert all(math.isfinite(outcome.summary[key]) for key in ("invariance", "invariance_null"))
    assert [path.name.endswith("_invariance.png") for path in outcome.plots] == [True]
