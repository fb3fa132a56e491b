"""SAE-Bench's unlearning through `run`: refused, naming every missing piece, before any model loads; and, on test
fixture files in SAE-Bench's formats and a hand-wired toy model, run end to end through SAE-Bench's own code.

The toy model stands in for gemma-2-2b-it only as far as SAE-Bench dispatches on (the name, `<bos>`, one token per
answer letter): SAE-Bench 0.6.0 has a prompt format and answer tokens for gemma-2-2b-it and gemma-2-9b-it only.
It answers a question by attending from the last position to the one choice line that says `yes` (WMDP-style
fixture) or `true` (MMLU-style fixture) and writing that line's letter. Its SAE has one latent per choice-line
token, so the latents that fire on the forget corpus (`X. yes` lines) and never on the retain corpus (`X. true`
lines) are the ones SAE-Bench clamps: the WMDP-style answers go, the MMLU-style ones stay.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import helpers
from tsae_evals.errors import UsageError
from tsae_evals.evals.saebench.adapter import validate_with_saebench
from tsae_evals.evals.saebench.unlearning.config import DEFAULT_DATASETS
from tsae_evals.evals.saebench.unlearning.result import UnlearningResult
from tsae_evals.results import read_record
from tsae_evals.runner import RunRequest, run

LETTERS = "ABCD"
SPECIALS = ["<unk>", "<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"]
ANSWER_TOKENS = [*LETTERS, *(f" {letter}" for letter in LETTERS)]
WORDS = ("yes", "no", "true", "false")
LINES = [f"{letter}. {word}" for word in WORDS for letter in LETTERS]
VOCAB = SPECIALS + ANSWER_TOKENS + LINES
D_MODEL = len(VOCAB) + len(LETTERS)  # one-hot token embeddings, then one direction per answer letter
MMLU_SUBSET = "human_aging"


def _never_load(name: str, device: str) -> Any:
    raise AssertionError(f"the model loader ran ({name}): the check should have refused first")


def _request(tmp_path: Path, sae_dir: Path, model: str, overrides: list[str]) -> RunRequest:
    return RunRequest(
        sae_specs=[str(sae_dir)],
        eval_names="unlearning",
        model=model,
        dataset=str(helpers.write_corpus(tmp_path / "windows.txt")),
        n_windows=4,
        context_size=32,
        batch_size=4,
        results_dir=tmp_path / "results",
        artifacts_dir=tmp_path / "artifacts",
        config_overrides=overrides,
    )


def test_default_offline_run_is_refused_naming_every_missing_piece(tmp_path, sae_dir):
    with pytest.raises(UsageError) as refused:
        run(_request(tmp_path, sae_dir, "smollm2-135m-instruct", []), model_loader=_never_load)
    message = str(refused.value)
    assert "\n" not in message
    # Instruction-tuned by name ("instruct"), but SAE-Bench has no answer tokens or prompt for it.
    assert "instruction-tuned" not in message
    assert "answer tokens and a prompt format for 'smollm2-135m-instruct'" in message
    assert "the WMDP-bio forget corpus (unlearning.forget_corpus_path is unset)" in message
    assert "the retain corpus, wikitext-2-raw-v1's test split (unlearning.retain_corpus_path is unset)" in message
    assert f"question files for {', '.join(DEFAULT_DATASETS)} (unlearning.data_dir is unset)" in message
    fix = refused.value.fix
    assert "--model gemma-2-2b-it or gemma-2-9b-it" in fix
    assert all(f"unlearning.{field}=" in fix for field in ("forget_corpus_path", "retain_corpus_path", "data_dir"))
    assert not (tmp_path / "results").exists() and not (tmp_path / "artifacts").exists()


def test_refusal_names_only_what_is_missing(tmp_path, sae_dir):
    data = _fixture_data(tmp_path / "fixture")
    data["mmlu"].unlink()
    overrides = [
        f"unlearning.forget_corpus_path={tmp_path / 'nowhere.jsonl'}",
        f"unlearning.retain_corpus_path={data['retain']}",
        f"unlearning.data_dir={data['data_dir']}",
        f'unlearning.dataset_names=["wmdp-bio","{MMLU_SUBSET}"]',
        "unlearning.instruction_tuned=false",
    ]
    with pytest.raises(UsageError) as refused:
        run(_request(tmp_path, sae_dir, "gemma-2-2b-it", overrides), model_loader=_never_load)
    message = refused.value.problem
    assert "an instruction-tuned model (unlearning.instruction_tuned=false for 'gemma-2-2b-it')" in message
    assert "answer tokens" not in message and "--model" not in refused.value.fix
    assert f"unlearning.forget_corpus_path={tmp_path / 'nowhere.jsonl'} is not a file" in message
    assert "retain corpus" not in message
    assert f"question files for {MMLU_SUBSET} (not in unlearning.data_dir=" in message


def test_base_model_lacks_instruction_tuning_and_answer_tokens(tmp_path, sae_dir):
    with pytest.raises(UsageError, match="an instruction-tuned model .*; answer tokens and a prompt format for 'gpt2'"):
        run(_request(tmp_path, sae_dir, "gpt2", []), model_loader=_never_load)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _questions(word: str, other: str, answers: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "question": f"Test fixture question {index}: which line is right?",
            "choices": [word if slot == answer else other for slot in range(4)],
            "answer": answer,
        }
        for index, answer in enumerate(answers)
    ]


def _fixture_data(root: Path) -> dict[str, Path]:
    """Tiny TEST FIXTURE files in the formats SAE-Bench reads: a forget corpus of `X. yes` lines (JSONL with
    `text`, as bio-forget-corpus.jsonl), a retain corpus of `X. true` lines (wikitext's `text` rows), and
    questions (cais/wmdp and cais/mmlu rows: `question`, `choices`, `answer`). None of it is WMDP or MMLU."""

    def document(word: str, index: int) -> str:
        return "\n".join(f"{LETTERS[(index + line) % 4]}. {word}" for line in range(24))

    data_dir = root / "questions"
    return {
        "forget": _write_jsonl(root / "forget.jsonl", [{"text": document("yes", i)} for i in range(40)]),
        "retain": _write_jsonl(root / "retain.jsonl", [{"text": document("true", i)} for i in range(40)]),
        "data_dir": data_dir,
        # No WMDP-style answer is A: once the `yes` latents are clamped the model's tie goes to A, so all are lost.
        "wmdp": _write_jsonl(data_dir / "wmdp-bio.jsonl", _questions("yes", "no", [1, 2, 3, 1, 2, 3])),
        # In the hub's layout (cais/mmlu's `<subset>/test-*.parquet`), the other form `data_dir` takes.
        "mmlu": _write_parquet(
            data_dir / MMLU_SUBSET / "test-00000-of-00001.parquet", _questions("true", "false", [0, 1, 2, 3, 0, 1])
        ),
    }


def _toy_tokenizer(directory: Path) -> Any:
    """Word-level: each choice line (`A. yes`) is one token, as is each answer string SAE-Bench scores."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(vocab={token: i for i, token in enumerate(VOCAB)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[A-D]\. (?:yes|no|true|false)| ?\S+"), "isolated")
    tokenizer.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    # TransformerLens reloads the tokenizer by its name_or_path.
    fast.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def _toy_model(directory: Path) -> Any:
    """Named gemma-2-2b-it (what SAE-Bench dispatches on). Layer 0 passes the embedding through (the SAE reads it
    there); layer 1's one head attends to the `X. yes`/`X. true` line and writes letter X's direction."""
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    tokenizer = _toy_tokenizer(directory)
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=D_MODEL,
        n_heads=1,
        d_head=len(LETTERS),
        n_ctx=96,
        d_vocab=len(VOCAB),
        attn_only=True,
        normalization_type=None,
        model_name="gemma-2-2b-it",
        seed=0,
        device="cpu",
    )
    model = HookedSAETransformer(cfg, tokenizer=tokenizer).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.embed.W_E.copy_(torch.eye(len(VOCAB), D_MODEL))
        attention = model.blocks[1].attn
        attention.b_Q[0, 0] = 40.0  # every position asks for a right-answer line, whatever its own token
        for letter_index, letter in enumerate(LETTERS):
            for word in ("yes", "true"):
                line = VOCAB.index(f"{letter}. {word}")
                attention.W_K[0, line, 0] = 1.0
                attention.W_V[0, line, letter_index] = 1.0
            attention.W_O[0, letter_index, len(VOCAB) + letter_index] = 1.0
            for answer in (letter, f" {letter}"):
                model.unembed.W_U[len(VOCAB) + letter_index, VOCAB.index(answer)] = 10.0
    return model


def _toy_sae(directory: Path) -> Path:
    """One latent per choice-line token (decoder row = that token's embedding): it fires (0.5) on that token only."""
    sae = helpers.tiny_sae(d_sae=len(LINES), d_in=D_MODEL)
    with torch.no_grad():
        decoder = torch.zeros(len(LINES), D_MODEL)
        for latent, line in enumerate(LINES):
            decoder[latent, VOCAB.index(line)] = 1.0
        sae.W_dec.copy_(decoder)
        sae.W_enc.copy_(decoder.T)
    return helpers.save_sae(sae, directory)


def _fixture_overrides(data: dict[str, Path]) -> list[str]:
    return [
        f"unlearning.forget_corpus_path={data['forget']}",
        f"unlearning.retain_corpus_path={data['retain']}",
        f"unlearning.data_dir={data['data_dir']}",
        f'unlearning.dataset_names=["wmdp-bio","{MMLU_SUBSET}"]',
        "unlearning.seq_len=32",
    ]


def test_tokenizer_without_answer_letters_is_refused_before_compute(tmp_path, sae_dir):
    """A model under a Gemma name whose tokenizer lacks SAE-Bench's answer tokens: refused once it is loaded."""
    model = helpers.tiny_model(n_ctx=64)
    model.cfg.model_name = "gemma-2-2b-it"
    request = _request(tmp_path, sae_dir, "gemma-2-2b-it", _fixture_overrides(_fixture_data(tmp_path / "fixture")))
    request.allow_degenerate = True
    [outcome] = run(request, model_loader=lambda name, device: model)
    assert outcome.status == "failed"
    assert outcome.message.startswith("unlearning is missing answer tokens for the tokenizer of 'gemma-2-2b-it'")
    assert "one distinct token for each of the answer strings" in outcome.message
    assert not (tmp_path / "artifacts" / "unlearning").exists()


def test_toy_model_answers_the_fixture_questions(tmp_path):
    from sae_bench.evals.unlearning.utils.metrics import convert_wmdp_data_to_prompt, get_output_probs_abcd

    model = _toy_model(tmp_path / "tokenizer")
    for question in _questions("yes", "no", [0, 1, 2, 3]):
        prompt = convert_wmdp_data_to_prompt(
            question["question"], question["choices"], prompt_format="GEMMA_INST_FORMAT"
        )
        probs = get_output_probs_abcd(model, [prompt], batch_size=1, n_batches=1, verbose=False)
        # "X" and " X" share the probability; SAE-Bench keeps the larger of the two.
        assert int(probs.argmax()) == question["answer"] and float(probs.max()) > 0.49


def test_runs_saebench_unlearning_end_to_end_on_fixture_files(tmp_path, monkeypatch):
    data = _fixture_data(tmp_path / "fixture")
    model = _toy_model(tmp_path / "tokenizer")
    sae_dir = _toy_sae(tmp_path / "toy_sae")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    overrides = [
        *_fixture_overrides(data),
        "unlearning.retain_thresholds=[0.01]",
        "unlearning.n_features_list=[4]",
        "unlearning.multipliers=[25]",
        "unlearning.dataset_size=8",
    ]
    request = _request(tmp_path, sae_dir, "gemma-2-2b-it", overrides)
    # The run's own windows are fixture words the toy tokenizer does not know: no latent fires on them.
    request.allow_degenerate = True
    [outcome] = run(request, model_loader=lambda name, device: model)
    assert (outcome.status, outcome.message) == ("ok", "")

    record = read_record(outcome.path)
    validate_with_saebench(record, UnlearningResult.OUTPUT)
    assert record.eval_config["model_name"] == "gemma-2-2b-it"
    assert record.eval_config["dataset_names"] == ["wmdp-bio", MMLU_SUBSET]
    # Clamping the four `yes` latents loses every WMDP-style answer and keeps every MMLU-style one.
    assert record.eval_result_metrics["unlearning"]["unlearning_score"] == 1.0
    unstructured = record.eval_result_unstructured
    assert unstructured["selected_questions"] == {"wmdp-bio": 6, MMLU_SUBSET: 6}
    [point] = unstructured["sweep"]
    assert (point["wmdp-bio"], point[MMLU_SUBSET], point["n_features"], point["multiplier"]) == (0.0, 1.0, 4, 25)
    assert unstructured["data"]["forget_corpus_path"] == str(data["forget"])

    # SAE-Bench wrote its own files, under our artifacts folder only; the working directory is untouched.
    written = {path.relative_to(tmp_path / "artifacts").as_posix() for path in (tmp_path / "artifacts").rglob("*")}
    assert any(path.endswith("data/question_ids/all/wmdp-bio_correct.csv") for path in written)
    assert any(path.endswith("results/sparsities/feature_sparsity_forget.txt") for path in written)
    assert any(path.endswith("retainthres0.01.pkl") for path in written)
    assert os.getcwd() == str(cwd) and not any(cwd.iterdir())
    assert model.cfg.model_name == "gemma-2-2b-it" and not model.hook_dict[helpers.HOOK].fwd_hooks


def test_nan_score_stays_nan():
    from sae_bench.evals.unlearning.eval_config import UnlearningEvalConfig
    from sae_bench.evals.unlearning.eval_output import (
        UnlearningEvalOutput,
        UnlearningMetricCategories,
        UnlearningMetrics,
    )

    output = UnlearningEvalOutput(
        eval_config=UnlearningEvalConfig(model_name="gemma-2-2b-it"),
        eval_id="x",
        datetime_epoch_millis=0,
        eval_result_metrics=UnlearningMetricCategories(unlearning=UnlearningMetrics(unlearning_score=math.nan)),
        eval_result_details=[],
        sae_bench_commit_hash="",
        sae_lens_id="",
        sae_lens_release_id="",
        sae_lens_version="",
        sae_cfg_dict={},
    )
    result = UnlearningResult.from_output(output)
    assert math.isnan(result.metrics_dict()["unlearning"]["unlearning_score"])
    assert result.metric_info()["unlearning.unlearning_score"].headline
