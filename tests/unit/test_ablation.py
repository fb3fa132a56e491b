"""ablate-window: one SAE per window, evaluated together, one row per window; non-windowed archs refused."""

from __future__ import annotations

import json

import pytest
from sae_lens import SAE

from tests import helpers
from tsae_evals.ablation import WindowAblation, ablate_window, window_option
from tsae_evals.errors import UsageError
from tsae_evals.runner import RunRequest
from tsae_evals.training import TrainRequest


def test_window_sweep_trains_each_window_and_tabulates(tiny_model, tmp_path, device):
    corpus = helpers.write_corpus(tmp_path / "corpus.txt", n_documents=150)
    common = {"model": helpers.TINY_MODEL_NAME, "dataset": str(corpus), "context_size": 32, "device": device}
    request = WindowAblation(
        train=TrainRequest(
            arch="tsae_temporal_context",
            layer=0,
            tokens=512,
            out=tmp_path / "saes",
            expansion=2,
            batch_size_tokens=256,
            **common,
        ),
        windows=(1, 3),
        run=RunRequest(
            sae_specs=[],
            eval_names="temporal_stability",
            n_windows=8,
            batch_size=4,
            results_dir=tmp_path / "r",
            allow_degenerate=True,
            **common,
        ),
    )
    rows, outcomes = ablate_window(request, model_loader=lambda *_: tiny_model)
    assert [row["context_window"] for row in rows] == [1, 3]
    assert all("temporal_stability.jaccard" in row for row in rows), rows
    for window in (1, 3):
        saved = SAE.load_from_disk(str(tmp_path / "saes" / f"tsae_temporal_context-w{window}"))
        assert saved.cfg.context_window == window
    table = json.loads((tmp_path / "r" / "window_ablation" / "tsae_temporal_context.json").read_text())
    assert table["option"] == "context_window" and len(table["rows"]) == 2


def test_architectures_without_a_window_are_refused_with_the_ones_that_have_one():
    assert window_option("tsae_temporal_lstm") == "memory_window"
    with pytest.raises(UsageError, match="tsae_temporal_consistency, tsae_temporal_context, tsae_temporal_lstm"):
        window_option("relu")
