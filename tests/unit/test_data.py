"""Documents load from every local format; windows never cross documents and start with BOS."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests import helpers
from tsae_evals.data import Documents, load_documents, make_windows
from tsae_evals.errors import UsageError


def test_local_formats_give_the_same_documents(tmp_path):
    texts = helpers.corpus(n_documents=5)
    (tmp_path / "a.txt").write_text("\n\n".join(texts))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    pd.DataFrame({"text": texts}).to_parquet(tmp_path / "a.parquet")
    loaded = [sorted(load_documents(str(tmp_path / f"a.{suffix}")).texts) for suffix in ("txt", "jsonl", "parquet")]
    assert loaded[0] == loaded[1] == loaded[2] == sorted(texts)


def test_document_order_is_seeded(corpus_file):
    assert load_documents(str(corpus_file), seed=1).texts == load_documents(str(corpus_file), seed=1).texts
    assert load_documents(str(corpus_file), seed=1).texts != load_documents(str(corpus_file), seed=2).texts


def test_empty_and_unsupported_files_are_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with pytest.raises(UsageError, match="holds no text"):
        load_documents(str(tmp_path / "empty.txt"))
    (tmp_path / "data.csv").write_text("text\nhello")
    with pytest.raises(UsageError, match="unsupported dataset file type"):
        load_documents(str(tmp_path / "data.csv"))
    (tmp_path / "nofield.jsonl").write_text('{"body": "hello"}\n')
    with pytest.raises(UsageError, match="KeyError"):
        load_documents(str(tmp_path / "nofield.jsonl"))


def test_windows_never_cross_documents_and_start_with_bos(tiny_model):
    tokenizer = tiny_model.tokenizer
    # each document repeats one word, so a window mixing two documents would hold two different word tokens
    words = [w for w in helpers.WORDS if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1][:6]
    assert len(words) == 6
    documents = Documents(source="test", texts=[" ".join([w] * 40) for w in words], seed=0)
    windows = make_windows(tokenizer, documents, context_size=16, n_windows=10, max_windows_per_document=2)
    assert windows.tokens.shape == (10, 16)
    assert (windows.tokens[:, 0] == tokenizer.bos_token_id).all()
    for row in windows.tokens:
        assert len(set(row[1:].tolist())) == 1
    # at most two windows from each document
    bodies = [row[1] for row in windows.tokens.tolist()]
    assert max(bodies.count(b) for b in set(bodies)) <= 2


def test_short_documents_are_skipped_not_padded(tiny_model):
    documents = Documents(source="test", texts=["cat dog", " ".join(["cat"] * 40)], seed=0)
    windows = make_windows(tiny_model.tokenizer, documents, context_size=8, n_windows=1)
    assert tiny_model.tokenizer.pad_token_id not in windows.tokens.tolist()[0]


def test_too_little_text_is_an_error_naming_the_fix(tiny_model):
    documents = Documents(source="tiny", texts=["cat dog"] * 3, seed=0)
    with pytest.raises(UsageError, match="gives only 0 windows"):
        make_windows(tiny_model.tokenizer, documents, context_size=32, n_windows=4)


def test_without_bos_windows_are_pure_text(tiny_model):
    documents = Documents(source="test", texts=[" ".join(["cat"] * 40)], seed=0)
    windows = make_windows(tiny_model.tokenizer, documents, context_size=8, n_windows=1, prepend_bos=False)
    assert windows.first_text_position == 0
    assert tiny_model.tokenizer.bos_token_id not in windows.tokens.tolist()[0]


def test_default_corpus_is_real_offline_text():
    documents = load_documents(seed=0, max_documents=50)
    assert len(documents.texts) == 50
    assert sum(len(t) for t in documents.texts) > 10_000
