"""`run --evals saebench` on SmolLM2 with a custom `tsae_` SAE: every SAE-Bench adapter, offline, one model load,
one summary (slow). Sizes are cut down; the numbers checked are the ones that must hold at any size."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

JUDGE_KEY_ENV = "TSAE_SLOW_JUDGE_KEY"
SMALL = [
    "core.batch_size_prompts=4",
    "core.n_eval_reconstruction_batches=1",
    "core.n_eval_sparsity_variance_batches=2",
    'sparse_probing.dataset_names=["sae-probes/ag_news","sae-probes/code"]',
    "sparse_probing.probe_train_set_size=120",
    "sparse_probing.probe_test_set_size=60",
    "sparse_probing.context_length=48",
    'sparse_probing_sae_probes.dataset_names=["5_hist_fig_ismale"]',
    "sparse_probing_sae_probes.max_seq_len=32",
    "scr.seeds=[0,1]",
    'scr.profession_pairs=[["professor","nurse"]]',
    "scr.train_set_size=80",
    "scr.test_set_size=40",
    "tpp.seeds=[0,1]",
    'tpp.professions=["nurse","surgeon","teacher"]',
    "tpp.train_set_size=80",
    "tpp.test_set_size=40",
    "autointerp.n_latents=2",
    f"autointerp.api_key_env={JUDGE_KEY_ENV}",
    "absorption.words_per_letter=20",
    "absorption.max_k_value=2",
]


@pytest.fixture(scope="module")
def smollm2():
    from tsae_evals.models import load_model

    return load_model()


@pytest.fixture(scope="module")
def t_sae(smollm2, tmp_path_factory):
    """T-SAE (a custom architecture) on layer 3, briefly trained: enough to be non-degenerate."""
    from tsae_evals.training import TrainRequest, train

    out = tmp_path_factory.mktemp("saebench") / "t_sae"
    return train(TrainRequest(arch="tsae_t_sae", layer=3, tokens=32768, out=out), model_loader=lambda *_: smollm2)


def test_saebench_group_runs_every_adapter_offline_on_a_custom_sae(smollm2, t_sae, tmp_path, capsys, monkeypatch):
    from tests.judge import running_judge
    from tsae_evals.cli.run_cmd import handle
    from tsae_evals.evals.saebench.adapter import SaeBenchResult, validate_with_saebench
    from tsae_evals.registry import groups
    from tsae_evals.runner import run

    monkeypatch.setenv(JUDGE_KEY_ENV, "test-key")
    # the CLI's own handler, with the already-loaded model handed to the runner instead of a second load
    monkeypatch.setattr("tsae_evals.runner.run", lambda request: run(request, model_loader=lambda *_: smollm2))
    results = tmp_path / "results"
    with running_judge() as judge:
        args = _args(t_sae, results, tmp_path / "artifacts", [*SMALL, f"autointerp.base_url={judge.url}"])
        code = handle(args)
    out = capsys.readouterr().out
    assert code == 0, out
    ran = set(groups()["saebench"]) - {"unlearning"}
    for name in ran:
        assert f"== {name}" in out
    assert "not run: unlearning: unlearning is missing" in out and "--model gemma-2-2b-it" in out

    records = {name: json.loads(next((results / name).glob("*.json")).read_text()) for name in ran}
    for name, record in records.items():
        from tsae_evals.registry import get_eval
        from tsae_evals.results import read_record

        spec = get_eval(name)
        result_cls = eval(spec.fn.__annotations__["return"], spec.fn.__globals__)
        assert issubclass(result_cls, SaeBenchResult)
        validate_with_saebench(read_record(next((results / name).glob("*.json"))), result_cls.OUTPUT)
        assert record["sae_cfg_dict"]["metadata"]["tsae_arch"] == "tsae_t_sae"

    # The offline sets are real, correctly labelled text: SmolLM2's own activations separate topics and languages.
    probing = records["sparse_probing"]["eval_result_metrics"]
    assert probing["llm"]["llm_test_accuracy"] > 0.85
    assert 0.5 <= probing["sae"]["sae_top_5_test_accuracy"] <= 1.0
    # Gender from a historical figure's name, at layer 3 of a 135M model: above chance (0.5; measured 0.62 on
    # thousands of held-out names), so the texts reach the model with their labels.
    assert records["sparse_probing_sae_probes"]["eval_result_metrics"]["llm"]["llm_test_accuracy"] > 0.55
    for name, category in (("scr", "scr_metrics"), ("tpp", "tpp_metrics")):
        metrics = records[name]["eval_result_metrics"]
        assert set(metrics) == {category, "seed_spread"}
        assert len(records[name]["eval_result_details"]) >= 2  # a row per seed (and pair)
    assert judge.requests, "autointerp never called the judge"
    autointerp = records["autointerp"]["eval_result_metrics"]["autointerp"]["autointerp_score"]
    assert 0.0 <= autointerp <= 1.0


def _args(sae, results, artifacts, overrides):
    import argparse

    from tsae_evals.cli.main import build_parser

    parser = build_parser()
    argv = ["run", "--sae", str(sae), "--evals", "saebench", "--n-windows", "16", "--results-dir", str(results)]
    argv += ["--artifacts-dir", str(artifacts)]
    for override in overrides:
        argv += ["--config", override]
    args = parser.parse_args(argv)
    assert isinstance(args, argparse.Namespace)
    return args
