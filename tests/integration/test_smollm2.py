"""SmolLM2-135M-Instruct, the embedded default: conversion fidelity and train -> run end to end (slow)."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytestmark = pytest.mark.slow

TEXT = "The keys to the cabinet are on the table. She said that the weather in Paris was lovely this spring."


@pytest.fixture(scope="module")
def smollm2():
    from tsae_evals.models import load_model

    return load_model()


def test_hooked_transformer_log_probs_match_hf(smollm2):
    from transformers import AutoModelForCausalLM

    from tsae_evals.models import smollm2_hf_dir

    hf_model = AutoModelForCausalLM.from_pretrained(smollm2_hf_dir(), dtype=torch.float32).eval()
    tokens = smollm2.to_tokens(TEXT, prepend_bos=True)
    assert tokens[0, 0] == smollm2.tokenizer.bos_token_id == 1
    with torch.no_grad():
        expected = torch.log_softmax(hf_model(tokens).logits, -1)
        actual = torch.log_softmax(smollm2(tokens), -1)
    assert (expected - actual).abs().max() < 1e-3


def test_model_prefers_the_agreeing_verb(smollm2):
    """A behavioural sanity check of the dequantised weights, from offline.md's measured minimal pairs."""
    tokens = smollm2.to_tokens("The keys to the cabinet", prepend_bos=True)
    with torch.no_grad():
        logits = smollm2(tokens)[0, -1]
    are, is_ = smollm2.to_single_token(" are"), smollm2.to_single_token(" is")
    assert logits[are] > logits[is_]


def test_train_then_run_core_and_temporal_stability(tmp_path, capsys):
    from tsae_evals.cli.main import main

    sae_dir = tmp_path / "sae"
    assert main(["train", "--arch", "relu", "--layer", "3", "--tokens", "16384", "--out", str(sae_dir)]) == 0
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    assert cfg["metadata"]["training_tokens"] == 16384 and cfg["metadata"]["tsae_arch"] == "relu"
    assert cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_post" and cfg["d_in"] == 576

    results = tmp_path / "results"
    code = main(
        [
            "run",
            "--sae",
            str(sae_dir),
            "--evals",
            "core,temporal_stability",
            "--n-windows",
            "16",
            "--results-dir",
            str(results),
            "--config",
            "core.batch_size_prompts=4",
            "--config",
            "core.n_eval_reconstruction_batches=1",
            "--config",
            "core.n_eval_sparsity_variance_batches=2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "== core" in out and "== temporal_stability" in out
    core = json.loads((results / "core" / "local_sae_eval_results.json").read_text())
    metrics = core["eval_result_metrics"]
    # the clean model's loss on real text is that of a working 135M model, not of random weights (ln 49152 = 10.8)
    assert 2.0 < metrics["model_performance_preservation"]["ce_loss_without_sae"] < 6.0
    assert metrics["sparsity"]["l0"] > 0
    temporal = json.loads((results / "temporal_stability" / "local_sae_eval_results.json").read_text())
    jaccard = temporal["eval_result_metrics"]["jaccard"]
    assert 0 < jaccard["adjacent_jaccard"] <= 1 and math.isfinite(jaccard["adjacent_jaccard_excess"])
    assert temporal["provenance"]["model"] == "smollm2-135m-instruct"


def test_local_hf_directory_loads_as_the_same_model(smollm2):
    from tsae_evals.models import load_model, smollm2_hf_dir

    from_directory = load_model(str(smollm2_hf_dir()))
    tokens = smollm2.to_tokens(TEXT, prepend_bos=True)
    with torch.no_grad():
        assert torch.allclose(from_directory(tokens), smollm2(tokens), atol=1e-5)


@pytest.fixture(scope="module")
def static_relu_layer3(smollm2, tmp_path_factory):
    from tsae_evals.training import TrainRequest, train

    out = tmp_path_factory.mktemp("static") / "relu"
    return train(TrainRequest(arch="relu", layer=3, tokens=32768, out=out), model_loader=lambda *_: smollm2)


CUSTOM_ARCHITECTURES = [
    "tsae_adaptive_variance",
    "tsae_hierarchical",
    "tsae_t_sae",
    "tsae_temporal_consistency",
    "tsae_temporal_context",
    "tsae_temporal_lstm",
]


@pytest.mark.parametrize("arch", CUSTOM_ARCHITECTURES)
def test_custom_architecture_trains_on_smollm2_to_a_non_degenerate_sae(arch, smollm2, static_relu_layer3, tmp_path):
    """Short budget (64k tokens, 32 steps) on real activations: the preflight passes and the SAE explains variance
    clearly above 0 on windows it was not trained on."""
    from sae_lens import SAE

    import custom_saes  # noqa: F401
    from tsae_evals.data import load_documents, make_windows
    from tsae_evals.preflight import run_preflight
    from tsae_evals.training import TrainRequest, train, training_architectures

    assert set(CUSTOM_ARCHITECTURES) == {a for a in training_architectures() if a.startswith("tsae_")}
    options = (f"init_from={static_relu_layer3}",) if arch == "tsae_temporal_lstm" else ()
    request = TrainRequest(arch=arch, layer=3, tokens=65536, out=tmp_path / arch, options=options, seed=1)
    sae = SAE.load_from_disk(str(train(request, model_loader=lambda *_: smollm2))).eval()
    # Documents from the end of another seed's order: unseen windows.
    documents = load_documents(seed=7, max_documents=200)
    windows = make_windows(smollm2.tokenizer, documents, context_size=128, n_windows=8)
    _, cache = smollm2.run_with_cache(windows.tokens, names_filter=["blocks.3.hook_resid_post"], stop_at_layer=4)
    report = run_preflight(sae, cache["blocks.3.hook_resid_post"], windows.first_text_position)
    assert report.status != "fail", report.problems
    assert report.explained_variance > 0.1, report
