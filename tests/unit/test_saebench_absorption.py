"""SAE-Bench absorption through our adapter: its declines say why with counts, its full path gives numbers on a model
built to have first-letter features, its side effects stay contained, and the prompt position fits the tokenizer."""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import helpers
from tsae_evals.evals.saebench.absorption.eval import alphabetic_vocabulary, prompt_position
from tsae_evals.evals.saebench.adapter import validate_with_saebench
from tsae_evals.results import EvalRecord, read_record
from tsae_evals.runner import RunRequest, run

OUTPUT = "sae_bench.evals.absorption.eval_output.AbsorptionEvalOutput"
TEMPLATE = "{word} has the first letter:"
MEANS = (
    "mean_absorption_fraction_score",
    "mean_full_absorption_score",
    "mean_num_split_features",
    "std_dev_absorption_fraction_score",
    "std_dev_full_absorption_score",
    "std_dev_num_split_features",
)
# The full path's per-letter probing and absorption loops are slow at SAE-Bench's defaults on a CPU.
QUICK = ["absorption.max_k_value=2", "absorption.k_sparse_probe_num_epochs=10"]


def alphabet_tokenizer(words_per_letter: int = 30, seed: int = 0) -> tuple[Any, list[str]]:
    """A word-level tokenizer whose vocabulary has `words_per_letter` made-up words for every letter, plus the
    words of SAE-Bench's prompt: each word one token, every letter present."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    rng = random.Random(seed)
    words: set[str] = set()
    for letter in "abcdefghijklmnopqrstuvwxyz":
        mine: set[str] = set()
        while len(mine) < words_per_letter:
            tail = "".join(rng.choice("aeiou" if i % 2 == 0 else "bcdfghklmnprstvz") for i in range(rng.randint(2, 4)))
            mine.add(letter + tail)
        words |= mine
    tokens = ["<unk>", "<bos>", "<eos>", "<pad>", "has", "the", "first", "letter", ":", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    vocab = {token: i for i, token in enumerate(tokens + sorted(words))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    directory = tempfile.mkdtemp(prefix="tsae-alphabet-tokenizer-")
    fast.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory), sorted(words)


@pytest.fixture(scope="module")
def alphabet_model(device: str) -> Any:
    """A one-layer random model whose word embeddings are a first-letter direction plus noise: its residual stream
    carries first letters, so SAE-Bench's ground-truth probes pass on every letter and its whole path runs."""
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    torch.manual_seed(0)
    tokenizer, words = alphabet_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=helpers.D_MODEL,
        n_heads=2,
        d_head=16,
        d_mlp=64,
        n_ctx=128,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        normalization_type="LN",
        model_name="alphabet-test-model",
        seed=0,
        device=device,
    )
    model = HookedSAETransformer(cfg, tokenizer=tokenizer).eval()
    letters = torch.randn(26, helpers.D_MODEL)
    with torch.no_grad():
        for word in words:
            row = 2 * letters[ord(word[0]) - ord("a")] + 0.5 * torch.randn(helpers.D_MODEL)
            model.W_E[tokenizer.convert_tokens_to_ids(word)] = row.to(device)
    return model


@pytest.fixture(scope="module")
def short_model(device: str) -> Any:
    """The contract tests' tiny model: SAE-Bench's prompts do not fit its 80 positions."""
    return helpers.tiny_model(n_ctx=80, device=device)


@pytest.fixture(scope="module")
def long_model(device: str) -> Any:
    """The tiny model with room for SAE-Bench's prompts; its 119-word vocabulary lacks six letters."""
    return helpers.tiny_model(n_ctx=256, device=device)


def run_absorption(model: Any, root: Path, device: str, saes: list[Path] | None = None, overrides: list[str] = ()):
    saes = saes or [helpers.save_sae(helpers.tiny_sae(), root / "tiny_sae")]
    request = RunRequest(
        sae_specs=[str(sae) for sae in saes],
        eval_names="absorption",
        dataset=str(helpers.write_corpus(root / "corpus.txt", words_per_document=200)),
        n_windows=8,
        context_size=64,
        results_dir=root / "results",
        artifacts_dir=root / "artifacts",
        config_overrides=list(overrides),
        device=device,
    )
    outcomes = run(request, model_loader=lambda name, device: model)
    assert [o.status for o in outcomes] == ["ok"] * len(saes), [o.message for o in outcomes]
    return [read_record(o.path) for o in outcomes if o.path is not None], outcomes


def notes(record: EvalRecord) -> dict[str, Any]:
    return record.eval_result_unstructured


def assert_declined(record: EvalRecord) -> None:
    assert all(math.isnan(record.eval_result_metrics["mean"][name]) for name in MEANS)
    assert record.eval_result_details == []
    validate_with_saebench(record, OUTPUT)


def test_prompt_longer_than_the_context_declines_with_its_length(short_model, tmp_path, device, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (record,), (outcome,) = run_absorption(short_model, tmp_path, device)
    assert_declined(record)
    found = notes(record)
    assert "154 tokens" in found["declined"] and "context of 80" in found["declined"]
    assert found["letters_passing"] is None and found["letters_needed"] == 20
    assert found["vocabulary_words"] == sum(found["words_per_letter"].values()) > 0
    assert outcome.summary["gt_letters"] is None and math.isnan(outcome.summary["absorption"])
    # NaN stays NaN in the file itself (SAE-Bench's own writer would make it -1)
    assert "NaN" in outcome.path.read_text()
    assert not (tmp_path / "artifacts").exists(), "declined before any work, so nothing cached"


@pytest.mark.parametrize("grad", [False, True])
def test_too_few_letters_declines_with_counts_and_leaves_grad_mode_alone(
    long_model, tmp_path, device, monkeypatch, grad
):
    from sae_bench.evals.absorption import common

    saebench_artifacts = common.RESULTS_DIR
    before = sorted(saebench_artifacts.rglob("*")) if saebench_artifacts.exists() else None
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with torch.set_grad_enabled(grad):
        (record,), (outcome,) = run_absorption(long_model, tmp_path, device)
        assert torch.is_grad_enabled() is grad
    assert_declined(record)
    found = notes(record)
    assert found["letters_passing"] < 20 == found["letters_needed"]
    assert (
        "too few first-letter features" in found["declined"]
        and f"{found['letters_passing']} of 26" in found["declined"]
    )
    assert set(found["probe_f1"]) == set("abcdefghijklmnopqrstuvwxyz")
    assert found["words_per_letter"]["x"] == 0 and found["words_per_letter"]["a"] > 0
    assert outcome.summary["gt_letters"] == found["letters_passing"]
    assert record.eval_config["prompt_token_pos"] == found["position"]["prompt_token_pos"] == -13
    # its probes and activations went to our artifacts folder, nowhere else
    assert list((tmp_path / "artifacts" / "absorption").glob("*/probes/tiny-test-model/layer_0/probe.pth"))
    assert list(cwd.iterdir()) == []
    after = sorted(saebench_artifacts.rglob("*")) if saebench_artifacts.exists() else None
    assert after == before


def test_full_path_gives_absorption_in_unit_range_and_shares_the_model_side(alphabet_model, tmp_path, device):
    first = helpers.save_sae(helpers.tiny_sae(d_sae=128), tmp_path / "sae_a")
    twin = tmp_path / "sae_b"
    shutil.copytree(first, twin)
    with torch.no_grad():
        records, _ = run_absorption(alphabet_model, tmp_path, device, saes=[first, twin], overrides=QUICK)
        assert not torch.is_grad_enabled()
    record = records[0]
    validate_with_saebench(record, OUTPUT)
    found = notes(record)
    assert found["declined"] is None and found["letters_passing"] >= 20
    assert found["position"]["prompt_token_pos"] == -6 and found["position"]["equal_length_prompts"]
    means = record.eval_result_metrics["mean"]
    assert 0 <= means["mean_absorption_fraction_score"] <= 1 and 0 <= means["mean_full_absorption_score"] <= 1
    assert means["mean_num_split_features"] >= 1
    assert len(record.eval_result_details) == found["letters_passing"]
    assert all(0 <= row["mean_absorption_fraction"] <= 1 for row in record.eval_result_details)
    assert set(record.headline()) == {"absorption", "full_absorption"}
    # one model side (probe trained once), one folder of SAE-side tables per SAE
    (model_side,) = (tmp_path / "artifacts" / "absorption").iterdir()
    assert len(list(model_side.glob("probes/*/layer_0/probe.pth"))) == 1
    for name in ("local_sae_a", "local_sae_b"):
        tables = model_side / "saes" / name
        assert (tables / "k_sparse_probing.json").exists() and list(tables.glob("feature_absorption/*/*.parquet"))
    # the twin read the cached probe yet got the same numbers: each step is seeded, not the cache's leftovers
    assert json.dumps(records[1].eval_result_metrics) == json.dumps(record.eval_result_metrics)


def test_prompt_position_is_where_the_word_lands_for_each_tokenizer(long_model):
    tokenizer = long_model.tokenizer
    words = alphabetic_vocabulary(tokenizer, None, seed=0)
    found = prompt_position(tokenizer, TEMPLATE, words, prepend_bos=True)
    # This BPE splits "has", "first" and "letter" into pieces: SAE-Bench's -6 would read a piece of "first".
    expected = -(1 + len(tokenizer.tokenize(" has the first letter:")))
    assert found.prompt_token_pos == expected != -6
    assert found.derived and found.words_at_position == found.words_checked == len(words)
    for word in words[:20]:
        ids = long_model.to_tokens(f"\ncat{TEMPLATE[6:]} C\n{TEMPLATE.format(word=word)}")[0]
        assert tokenizer.convert_ids_to_tokens(int(ids[found.prompt_token_pos])) == word
    fixed = prompt_position(tokenizer, TEMPLATE, words, prepend_bos=True, fixed=-6)
    assert fixed.prompt_token_pos == -6 and not fixed.derived and fixed.words_at_position == 0

    word_level, alphabet = alphabet_tokenizer(words_per_letter=3)
    assert prompt_position(word_level, TEMPLATE, alphabet, prepend_bos=True).prompt_token_pos == -6


def test_vocabulary_is_sorted_capped_per_letter_and_seeded(long_model):
    tokenizer = long_model.tokenizer
    full = alphabetic_vocabulary(tokenizer, None, seed=0)
    assert full == sorted(full) and len(full) == len(set(full))
    capped = alphabetic_vocabulary(tokenizer, 5, seed=0)
    assert capped == alphabetic_vocabulary(tokenizer, 5, seed=0) and set(capped) <= set(full)
    by_letter: dict[str, int] = {}
    for word in capped:
        by_letter[word.strip()[0].lower()] = by_letter.get(word.strip()[0].lower(), 0) + 1
    assert max(by_letter.values()) == 5


def test_saebench_view_of_the_model_is_undone(long_model):
    from sae_bench.evals.absorption import common, feature_absorption

    from tsae_evals.evals.saebench.absorption.eval import as_saebench_sees_it

    original = common.get_alpha_tokens
    with as_saebench_sees_it(long_model, 0, ["cat", "mat"], left_padding=True):
        assert (
            common.get_alpha_tokens(long_model.tokenizer) == feature_absorption.get_alpha_tokens(None) == ["cat", "mat"]
        )
        assert long_model.tokenizer.padding_side == "left"
        # stopped after block 0: the cached hook is there, the logits are not computed
        out, cache = long_model.run_with_cache(["cat sat", "the cat sat on"], names_filter=[helpers.HOOK])
        assert out.shape[-1] == helpers.D_MODEL and cache[helpers.HOOK].shape[:2] == (2, 5)
    assert common.get_alpha_tokens is original and long_model.tokenizer.padding_side == "right"
    assert "run_with_cache" not in vars(long_model)
