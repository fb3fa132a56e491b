"""SAE-Bench absorption on SmolLM2-135M-Instruct with a trained layer-6 SAE (slow): its prompt position holds for
this tokenizer, and the run gives either absorption numbers or an explicit decline with counts."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.slow

# Small enough for about a minute on two CPU cores (50 words per letter instead of 100, k up to 3 instead of 10);
# at 50 words per letter about 17 letters pass the probe threshold, so 15 are asked for to reach the SAE-side path.
QUICK = [
    "absorption.words_per_letter=50",
    "absorption.max_k_value=3",
    "absorption.min_feats_for_eval=15",
]


@pytest.fixture(scope="module")
def smollm2():
    from tsae_evals.models import load_model

    return load_model()


@pytest.fixture(scope="module")
def layer6_sae(smollm2, tmp_path_factory):
    """The layer-6 TopK SAE the cache holds (`smollm2-l6-topk`), else a short ReLU training run, as
    test_smollm2.py trains its own."""
    from tsae_evals.models import cache_dir
    from tsae_evals.training import TrainRequest, train

    cached = cache_dir() / "saes" / "smollm2-l6-topk"
    if (cached / "cfg.json").exists():
        return cached
    out = tmp_path_factory.mktemp("absorption") / "relu"
    return train(TrainRequest(arch="relu", layer=6, tokens=32768, out=out), model_loader=lambda *_: smollm2)


def test_smollm2_prompt_position_is_saebench_default(smollm2):
    from tsae_evals.evals.saebench.absorption.eval import alphabetic_vocabulary, prompt_position

    words = alphabetic_vocabulary(smollm2.tokenizer, None, seed=0)
    found = prompt_position(smollm2.tokenizer, "{word} has the first letter:", words, prepend_bos=True)
    assert len(words) > 40_000
    assert found.prompt_token_pos == -6 and found.words_at_position == found.words_checked == len(words)
    assert found.equal_length_prompts and found.prompt_tokens == 88


def test_absorption_on_smollm2_gives_numbers_or_a_decline_with_counts(smollm2, layer6_sae, tmp_path):
    from tsae_evals.evals.saebench.adapter import validate_with_saebench
    from tsae_evals.results import read_record
    from tsae_evals.runner import RunRequest, run

    request = RunRequest(
        sae_specs=[str(layer6_sae)],
        eval_names="absorption",
        n_windows=8,
        results_dir=tmp_path / "results",
        artifacts_dir=tmp_path / "artifacts",
        config_overrides=QUICK,
    )
    (outcome,) = run(request, model_loader=lambda *_: smollm2)
    assert outcome.status == "ok", outcome.message
    record = read_record(outcome.path)
    validate_with_saebench(record, "sae_bench.evals.absorption.eval_output.AbsorptionEvalOutput")
    notes = record.eval_result_unstructured
    assert notes["position"]["prompt_token_pos"] == record.eval_config["prompt_token_pos"] == -6
    assert notes["vocabulary_words"] == 1300 and len(notes["probe_f1"]) == 26
    means = record.eval_result_metrics["mean"]
    if notes["declined"] is None:
        assert notes["letters_passing"] >= notes["letters_needed"] == 15
        assert 0 <= means["mean_absorption_fraction_score"] <= 1 and 0 <= means["mean_full_absorption_score"] <= 1
        assert len(record.eval_result_details) == notes["letters_passing"]
    else:
        assert notes["letters_passing"] < notes["letters_needed"] and "of 26 letters" in notes["declined"]
        assert all(math.isnan(value) for value in means.values())
