"""ablate-window: one SAE per window, evaluated together, one row per window; non-windowed archs refused."""

from __future__ import annotations

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
            arch="tsae_temporal_consistency",
            layer=0,
            tokens=512,
            out=tmp_path / "sweep",
            expansion=2,
            batch_size_tokens=256,
            **common,
        ),
        windows=(2, 3),
        run=RunRequest(
            sae_specs=[],
            eval_names="temporal_stability",
            n_windows=8,
            batch_size=4,
            allow_degenerate=True,
            **common,
        ),
    )
    result = ablate_window(request, model_loader=lambda *_: tiny_model)
    names = [row["variant"] for row in result.rows]
    assert names == ["tsae_temporal_consistency[window_size=2]", "tsae_temporal_consistency[window_size=3]"]
    assert all(row["control"] == names[0] for row in result.rows)
    assert result.rows[1]["metrics"]["temporal_stability.jaccard"]["effect"] is not None
    for window in (2, 3):
        saved = SAE.load_from_disk(str(tmp_path / "sweep" / "saes" / f"{names[window - 2]}-s0"))
        assert saved.cfg.window_size == window
    assert "window_size=3" in result.table_markdown.read_text()


def test_architectures_without_a_window_are_refused_with_the_ones_that_have_one():
    assert window_option("tsae_temporal_lstm") == "memory_window"
    with pytest.raises(UsageError, match="tsae_temporal_consistency, tsae_temporal_context, tsae_temporal_lstm"):
        window_option("relu")
