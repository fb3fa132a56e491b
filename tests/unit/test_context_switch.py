"""context_switch: boundary scores by hand, the streaming AUROC against an exact one, and a run on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from sklearn.metrics import roc_auc_score

from tsae_evals.evals.context_switch.score import StreamingAUROC, boundary_scores
from tsae_evals.runner import RunRequest, run


def test_boundary_score_is_one_at_a_clean_switch_and_zero_elsewhere():
    vectors = torch.zeros(1, 12, 3)
    vectors[0, :6, 0] = 1.0
    vectors[0, 6:, 1] = 2.0
    scores, offset = boundary_scores(vectors, window=2)
    assert offset == 2
    expected = torch.zeros(12 - 4 + 1, dtype=torch.float64)  # t = 2..10
    expected[6 - offset] = 1.0  # before (1,0,0), after (0,2,0): orthogonal
    expected[5 - offset] = 1 - 0.5 / 1.25**0.5  # before (1,0,0), after (0.5,1,0)
    expected[7 - offset] = 1 - 1 / 1.25**0.5  # before (0.5,1,0), after (0,2,0)
    torch.testing.assert_close(scores[0], expected)


def test_streaming_auroc_equals_the_exact_one_up_to_bin_width():
    generator = torch.Generator().manual_seed(0)
    labels = torch.rand(5000, generator=generator) < 0.1
    scores = torch.rand(5000, generator=generator) + 0.3 * labels
    streaming = StreamingAUROC(bins=4096)
    for chunk in range(0, 5000, 700):
        streaming.add(scores[chunk : chunk + 700], labels[chunk : chunk + 700])
    assert streaming.auroc() == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-3)


def test_independent_vectors_give_chance_auroc():
    generator = torch.Generator().manual_seed(1)
    vectors = torch.rand(200, 40, 8, generator=generator)
    scores, offset = boundary_scores(vectors, window=4)
    labels = torch.zeros_like(scores, dtype=torch.bool)
    labels[:, 20 - offset] = True
    auroc = StreamingAUROC(bins=4096)
    auroc.add(scores, labels)
    assert auroc.auroc() == pytest.approx(0.5, abs=0.05)


def test_streaming_auroc_on_the_test_device_equals_cpu(device):
    """Run with `--device cuda`: histograms live on the scores' device and give the CPU's numbers."""
    if device == "cpu":
        pytest.skip("needs --device other than cpu")
    generator = torch.Generator().manual_seed(2)
    vectors = torch.rand(40, 30, 8, generator=generator)
    boundaries = torch.randint(4, 26, (40,), generator=generator)
    found = {}
    for where in ("cpu", device):
        auroc = StreamingAUROC(bins=512)
        for i in range(0, 40, 16):
            scores, offset = boundary_scores(vectors[i : i + 16].to(where), window=4)
            labels = (torch.arange(scores.shape[1]) + offset)[None, :] == boundaries[i : i + 16, None]
            auroc.add(scores, labels)
        found[where] = (auroc.auroc(), auroc.positive_sum, auroc.negative_sum)
    assert found[device] == pytest.approx(found["cpu"], rel=1e-9)


def test_context_switch_runs_on_the_tiny_model(tiny_model, sae_dir, corpus_file, tmp_path, device):
    request = RunRequest(
        device=device,
        sae_specs=[str(sae_dir)],
        eval_names="context_switch",
        dataset=str(corpus_file),
        n_windows=16,
        context_size=48,
        batch_size=4,
        results_dir=tmp_path,
        config_overrides=["context_switch.window_sizes=[1,4,8]"],
    )
    outcome = run(request, model_loader=lambda *_: tiny_model)[0]
    assert outcome.status == "ok", outcome.message
    record = json.loads(outcome.path.read_text())
    rows = record["eval_result_details"]
    assert [row["window"] for row in rows] == [1, 4, 8]
    assert all(row["n_boundaries"] == 8 and 0 <= row["auroc"] <= 1 for row in rows)
    assert all(row["n_other"] == 8 * (47 - 2 * row["window"]) for row in rows)
