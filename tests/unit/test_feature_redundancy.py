"""feature_redundancy against values derived by hand and a direct numpy computation on the whole array."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tsae_evals.evals.feature_redundancy.config import FeatureRedundancyConfig
from tsae_evals.evals.feature_redundancy.stream import (
    RedundancyScorer,
    cross_products,
    roll_columns,
    score_redundancy,
)

CFG = FeatureRedundancyConfig(min_firings=1, dense_threshold=1.0)


def _score(latents: torch.Tensor, cfg: FeatureRedundancyConfig = CFG, batch: int = 4, decoder=None, seed: int = 0):
    batches = (latents[i : i + batch] for i in range(0, latents.shape[0], batch))
    return score_redundancy(batches, latents.shape[-1], cfg, seed, decoder)


def _duplicating_sae():
    """A hand-built ReLU SAE on 3 inputs: latents 0 and 1 read and write input 0 (1 at twice 0's scale), latent 2
    reads input 1 and latent 3 input 2."""
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=3, d_sae=4))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8]]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def test_duplicate_latents_have_r_one_are_redundant_and_share_a_decoder_direction():
    from tsae_evals.context import EncodedBatch

    sae = _duplicating_sae()
    inputs = torch.randn(32, 40, 3, generator=torch.Generator().manual_seed(0))
    latents = EncodedBatch.encode(sae, inputs).latents
    result = _score(latents, batch=8, decoder=sae.W_dec)
    correlation = result.metrics.correlation
    # Pairs (0,1) r = 1; the other five pairs read independent inputs: r near 0 (N = 1280, sd about 0.03).
    assert result.top_pairs[0].latent_a == 0 and result.top_pairs[0].latent_b == 1
    assert result.top_pairs[0].correlation == pytest.approx(1.0, abs=1e-9)
    assert all(abs(pair.correlation) < 0.1 for pair in result.top_pairs[1:])
    assert correlation.n_redundant_pairs == 1 and correlation.redundant_pair_fraction == pytest.approx(1 / 6)
    # The roll null breaks the duplicate's alignment.
    assert abs(result.top_pairs[0].correlation_shuffled) < 0.1
    assert correlation.redundant_pair_fraction_shuffled == 0.0
    # Decoder: rows 0 and 1 are parallel (cosine 1), rows 2 and 3 have cosine 0.6; the max per latent is
    # (1, 1, 0.6, 0.6) and the one redundant pair has cosine 1.
    decoder = result.metrics.decoder
    assert decoder.mean_max_cosine == pytest.approx(0.8)
    assert decoder.redundant_pair_cosine == pytest.approx(1.0)
    assert result.top_pairs[0].decoder_cosine == pytest.approx(1.0)
    # mean max r: latents 0 and 1 have 1, latents 2 and 3 a small value.
    assert correlation.mean_max_r == pytest.approx(0.5, abs=0.05)


def test_independent_latents_are_near_zero_at_the_chance_value():
    generator = torch.Generator().manual_seed(1)
    latents = (torch.rand(64, 50, 12, generator=generator) < 0.2).float() * torch.rand(64, 50, 12, generator=generator)
    correlation = _score(latents, batch=16).metrics.correlation
    n = 64 * 50
    assert correlation.mean_abs_r_chance == pytest.approx(math.sqrt(2 / (math.pi * n)))
    assert correlation.mean_abs_r == pytest.approx(correlation.mean_abs_r_chance, rel=0.35)
    assert correlation.mean_abs_r_shuffled == pytest.approx(correlation.mean_abs_r_chance, rel=0.35)
    assert correlation.n_redundant_pairs == 0 and correlation.redundant_pair_fraction_chance < 1e-12
    assert correlation.mean_max_r == pytest.approx(correlation.mean_max_r_chance, rel=0.5)


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_streaming_equals_numpy_corrcoef_on_the_whole_array_for_any_batch_split(batch):
    generator = torch.Generator().manual_seed(2)
    on = torch.rand(7, 23, 9, generator=generator) < torch.linspace(0.05, 0.7, 9)
    latents = on.float() * torch.rand(7, 23, 9, generator=generator)
    latents[..., 8] = latents[..., 2] * 0.5 + latents[..., 3]  # a correlated latent
    cfg = CFG.model_copy(update={"block_size": 9, "top_pairs": 100})
    result = _score(latents, cfg, batch=batch)
    expected = np.corrcoef(latents.reshape(-1, 9).numpy().astype(np.float64), rowvar=False)
    order = result.block_latents
    np.testing.assert_allclose(np.array(result.block_correlation), expected[np.ix_(order, order)], atol=1e-6)
    upper = expected[np.triu_indices(9, 1)]
    assert result.metrics.correlation.mean_abs_r == pytest.approx(np.abs(upper).mean(), abs=1e-6)
    assert result.metrics.correlation.n_redundant_pairs == int((upper > 0.5).sum())
    off = expected - 2 * np.eye(9)
    assert result.metrics.correlation.mean_max_r == pytest.approx(off.max(1).mean(), abs=1e-6)
    for pair in result.top_pairs:
        assert pair.correlation == pytest.approx(expected[pair.latent_a, pair.latent_b], abs=1e-6)


def test_roll_null_equals_a_hand_rolled_correlation():
    values = torch.rand(30, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    offsets = torch.tensor([0, 5, 29, 12])
    rolled = roll_columns(values, offsets)
    for j, offset in enumerate(offsets.tolist()):
        assert torch.equal(rolled[:, j], torch.roll(values[:, j], -offset))


def test_sparse_cross_products_equal_the_dense_product():
    generator = torch.Generator().manual_seed(5)
    values = torch.rand(200, 40, generator=generator, dtype=torch.float64)
    values *= torch.rand(200, 40, generator=generator) < 0.03  # under 10% non-zero: the sparse path
    torch.testing.assert_close(cross_products(values), values.T @ values, rtol=0, atol=1e-12)


def test_dense_and_rare_latents_are_excluded_and_wide_saes_track_the_most_frequent():
    generator = torch.Generator().manual_seed(4)
    latents = (torch.rand(8, 20, 6, generator=generator) < 0.2).float()
    latents[..., 0] = 1.0 + torch.rand(8, 20, generator=generator)  # dense
    latents[..., 5] = 0.0
    latents[0, 0, 5] = 1.0  # fires once
    cfg = FeatureRedundancyConfig(min_firings=2, dense_threshold=0.5)
    result = _score(latents, cfg)
    exclusions = result.metrics.exclusions
    assert (exclusions.n_dense_excluded, exclusions.n_latents_counted, exclusions.n_pairs) == (1, 4, 6)
    assert result.dense_latents == [0] and sorted(result.block_latents) == [1, 2, 3, 4]
    # Tracking 3 of 6: the three most frequent in the first batch (dense latent 0 among them, then excluded).
    narrow = FeatureRedundancyConfig(min_firings=2, dense_threshold=0.5, max_latents=3)
    scorer = RedundancyScorer(6, narrow, 0)
    scorer.add(latents[:4])
    counts = (latents[:4] > 0).sum((0, 1))
    expected = sorted(torch.argsort(counts, descending=True, stable=True)[:3].tolist())
    assert scorer.tracked is not None and scorer.tracked.tolist() == expected
    scorer.add(latents[4:])
    wide_result = scorer.finish()
    assert wide_result.metrics.exclusions.n_latents_tracked == 3
    assert "most often active" in wide_result.tracked_by


def test_both_analysis_evals_run_in_one_pass_on_the_tiny_model_and_draw_the_heatmap(
    tiny_model, sae_dir, corpus_file, tmp_path, device
):
    from tsae_evals import registry
    from tsae_evals.results import read_record
    from tsae_evals.runner import RunRequest, run

    assert {"position_invariance", "feature_redundancy"} <= set(registry.groups()["analysis"])

    request = RunRequest(
        device=device,
        sae_specs=[str(sae_dir)],
        eval_names="position_invariance,feature_redundancy",
        dataset=str(corpus_file),
        n_windows=16,
        context_size=48,
        batch_size=4,
        results_dir=tmp_path,
        plots=True,
    )
    outcomes = {o.eval_name: o for o in run(request, model_loader=lambda *_: tiny_model)}
    assert set(outcomes) == {"position_invariance", "feature_redundancy"}
    assert outcomes["position_invariance"].status == "ok", outcomes["position_invariance"].message
    outcome = outcomes["feature_redundancy"]
    assert outcome.status == "ok", outcome.message
    assert {"mean_abs_r", "mean_abs_r_null", "redundant_pairs", "max_r", "decoder_max_cos"} <= set(outcome.summary)
    assert [path.name.endswith("_correlation.png") for path in outcome.plots] == [True]
    assert outcome.path is not None
    unstructured = read_record(outcome.path).eval_result_unstructured
    block = np.array(unstructured["block_correlation"])
    assert block.shape == (len(unstructured["block_latents"]),) * 2 and 0 < block.shape[0] <= 64
    np.testing.assert_allclose(np.diag(block), 1.0, atol=1e-9)
