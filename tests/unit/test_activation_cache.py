"""The activation cache on disk and the streamed buffer: same activations as a direct forward, written once and
shared, readable by sae-lens, whole windows in order, a short dataset refused before any compute."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from custom_saes.training.activations import DiskSequenceActivations, StreamedSequenceActivations
from tests import helpers
from tsae_evals.data import load_documents, make_windows
from tsae_evals.errors import UsageError
from tsae_evals.training.activation_cache import cached_activations, token_chunks

CONTEXT = 16


@pytest.fixture
def documents(tmp_path):
    return load_documents(str(helpers.write_corpus(tmp_path / "corpus.txt", n_documents=40)), seed=3)


def _cache(tiny_model, documents, root: Path, n_windows: int, per_document: int = 2) -> DiskSequenceActivations:
    return cached_activations(
        tiny_model,
        helpers.HOOK,
        documents,
        n_windows=n_windows,
        context_size=CONTEXT,
        per_document=per_document,
        root=root,
        batch_size=4,
    )


def test_cache_holds_the_hook_activations_of_the_windows_in_order(tiny_model, documents, tmp_path):
    cache = _cache(tiny_model, documents, tmp_path / "root", n_windows=10)
    windows = make_windows(tiny_model.tokenizer, documents, context_size=CONTEXT, n_windows=10)
    with torch.no_grad():
        _, model_cache = tiny_model.run_with_cache(windows.tokens, names_filter=[helpers.HOOK], prepend_bos=False)
    direct = model_cache[helpers.HOOK].float()
    cached = cache.windows(torch.arange(10))
    torch.testing.assert_close(cached, direct, rtol=1e-5, atol=1e-5)
    expected_scale = math.sqrt(helpers.D_MODEL) / direct[:, 1:].norm(dim=-1).mean().item()
    assert cache.scale == pytest.approx(expected_scale, rel=1e-5)
    assert cache.tokens_per_window == CONTEXT - 1
    # Rows come back in the order asked for, not sorted.
    torch.testing.assert_close(cache.windows(torch.tensor([7, 2])), cached[[7, 2]])


def test_a_cache_is_written_once_and_a_larger_one_serves_smaller_requests(tiny_model, documents, tmp_path):
    root = tmp_path / "root"
    large = _cache(tiny_model, documents, root, n_windows=12)
    small = _cache(tiny_model, documents, root, n_windows=5)
    assert small.path == large.path and small.n_windows == 5
    assert len([p for p in root.iterdir() if not p.name.startswith(".")]) == 1
    other_key = _cache(tiny_model, documents, root, n_windows=5, per_document=1)
    assert other_key.path != large.path


def test_sae_lens_reads_the_cache_as_its_own_cached_activations(tiny_model, documents, tmp_path):
    import datasets

    cache = _cache(tiny_model, documents, tmp_path / "root", n_windows=6)
    dataset = datasets.load_from_disk(str(cache.path))
    assert dataset.features[helpers.HOOK].shape == (CONTEXT, helpers.D_MODEL)
    assert set(dataset.column_names) == {helpers.HOOK, "token_ids"}
    windows = make_windows(tiny_model.tokenizer, documents, context_size=CONTEXT, n_windows=6)
    assert dataset.with_format("torch")["token_ids"].tolist() == windows.tokens.tolist()


def test_batches_are_whole_windows_with_bos_masked(tiny_model, documents, tmp_path):
    cache = _cache(tiny_model, documents, tmp_path / "root", n_windows=8)
    x, mask = next(cache.batches(4, seed=0))
    assert x.shape == (4, CONTEXT, helpers.D_MODEL) and x.dtype == torch.float32
    assert not mask[:, 0].any() and mask[:, 1:].all()
    every_row = torch.cat([b for b, _ in itertools.islice(cache.batches(4, seed=0), 2)])
    assert torch.unique(every_row[:, 1:].sum((1, 2))).numel() == 8  # one epoch serves each window once


def test_a_short_dataset_is_refused_before_any_activation_is_computed(tiny_model, documents, tmp_path):
    calls = []
    original = tiny_model.run_with_cache
    tiny_model.run_with_cache = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        with pytest.raises(UsageError, match="gives only .* at most 2 per document"):
            _cache(tiny_model, documents, tmp_path / "root", n_windows=10_000)
    finally:
        del tiny_model.run_with_cache
    assert calls == []
    assert not any((tmp_path / "root").glob("*w"))


def test_the_stream_serves_every_window_and_holds_only_its_buffer(tiny_model, documents):
    def produce():
        from custom_saes.training.activations import hook_activations

        for tokens in token_chunks(tiny_model.tokenizer, documents, None, CONTEXT, 2, chunk_windows=4):
            yield from hook_activations(tiny_model, helpers.HOOK, tokens, batch_size=4)

    total = sum(len(t) for t in token_chunks(tiny_model.tokenizer, documents, None, CONTEXT, 2))
    stream = StreamedSequenceActivations(produce, first_text_position=1, buffer_windows=8)
    batches = stream.batches(2, seed=0)
    seen = {round(float(x[i, 1:].sum()), 3) for x, _ in itertools.islice(batches, total) for i in range(2)}
    assert len(seen) > total * 0.6  # windows keep arriving; the buffer stays 8 windows
    assert stream.n_windows == 8 and stream._buffer.shape[0] == 8
    x, mask = next(batches)
    assert x.shape == (2, CONTEXT, helpers.D_MODEL) and not mask[:, 0].any()


def test_two_jobs_filling_one_cache_at_once_both_succeed(tiny_model, documents, tmp_path, monkeypatch):
    import tsae_evals.training.activation_cache as activation_cache

    root = tmp_path / "root"
    first = _cache(tiny_model, documents, root, n_windows=6)
    # The second job looked before the first finished: it computes its own copy and must not clobber the first.
    monkeypatch.setattr(activation_cache, "find_cache", lambda *_: None)
    second = _cache(tiny_model, documents, root, n_windows=6)
    assert second.path == first.path
    torch.testing.assert_close(second.windows(torch.arange(6)), first.windows(torch.arange(6)))
    assert [p.name for p in root.iterdir()] == [first.path.name]  # no staging folder left behind


def test_streamed_training_learns_as_well_as_training_from_the_cache(tiny_model, tmp_path):
    """Regression: the stream's producer once left gradients off in the training loop (no_grad around a yield)."""
    from tsae_evals.training import TrainRequest, train

    corpus = helpers.write_corpus(tmp_path / "corpus.txt", n_documents=60)
    final_mse = {}
    for activations in ("stream", "disk"):
        out = train(
            TrainRequest(
                arch="control_relu",
                layer=0,
                tokens=2048,
                out=tmp_path / activations,
                expansion=2,
                context_size=32,
                batch_size_tokens=124,
                model=helpers.TINY_MODEL_NAME,
                dataset=str(corpus),
                activations=activations,
                l1_coefficient=0.0,
                checkpoints=False,
            ),
            lambda *_: tiny_model,
        )
        log = json.loads((out / "cfg.json").read_text())["metadata"]["training_log"]
        assert log[-1]["mse"] < 0.8 * log[0]["mse"], (activations, log[0], log[-1])
        final_mse[activations] = log[-1]["mse"]
    assert torch.is_grad_enabled()
    assert final_mse["stream"] < 1.5 * final_mse["disk"]
