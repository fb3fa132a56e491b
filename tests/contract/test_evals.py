"""Contract tests over every registered eval: a new eval is tested the moment it registers.

Each eval's default config validates and runs on the tiny model through `run`; its record round-trips through
the writer and the reader; every metric it declares exists in its metrics, its headline metrics are present,
and the metric keys of each eval version are pinned (changing them without a version bump fails here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import helpers
from tests.judge import running_judge
from tsae_evals import registry
from tsae_evals.results import EvalRecord, MetricInfo, read_record, write_record
from tsae_evals.runner import RunRequest, run

SPECS = registry.all_evals()
PINNED = Path(__file__).with_name("metric_keys.json")
CONTEXT_SIZE = 80  # the defaults of causal_interventions need 70 positions
SMALL_RUNS = {
    # SAE-Bench's probing evals at their defaults draw thousands of texts; the contract needs a run, not a benchmark.
    "sparse_probing": [
        'dataset_names=["sae-probes/ag_news","sae-probes/news_class"]',
        "probe_train_set_size=60",
        "probe_test_set_size=40",
    ],
    "sparse_probing_sae_probes": ['dataset_names=["5_hist_fig_ismale","127_art_type_song"]'],
    "scr": ["seeds=[0,1]", "train_set_size=40", "test_set_size=24", "probe_epochs=2"],
    "tpp": [
        "seeds=[0,1]",
        "train_set_size=40",
        "test_set_size=24",
        "probe_epochs=2",
        'professions=["nurse","surgeon","teacher"]',
    ],
}
"""`eval.field=value` settings that keep the expensive evals' contract run short (their defaults are still checked
by test_default_config_validates_and_is_documented)."""


@pytest.fixture(scope="module")
def long_model(device):
    return helpers.tiny_model(n_ctx=CONTEXT_SIZE, device=device)


CANNOT_RUN_ON_THE_TINY_MODEL = {
    "unlearning": "SAE-Bench's unlearning prompts only gemma-2-*-it; tests/unit/test_saebench_unlearning.py runs it "
    "end to end on a toy model of that name",
    "hierarchy": "applies only to tsae_hierarchical SAEs; tests/unit/test_hierarchy_eval.py runs it on one",
}
"""Evals the tiny model cannot serve: the contract run must report them unavailable (not failed), with a reason."""
JUDGE_KEY_ENV = "TSAE_CONTRACT_JUDGE_KEY"


@pytest.fixture(scope="module")
def run_outcomes(long_model, tmp_path_factory, device):
    """Every registered eval with its default config (small sizes for the costly ones), in one run, through the
    groups and names users type; autointerp is judged by a local OpenAI-compatible server."""
    root = tmp_path_factory.mktemp("evals")
    sae = helpers.save_sae(helpers.tiny_sae(), root / "tiny_sae")
    corpus = helpers.write_corpus(root / "corpus.txt", words_per_document=200)
    with running_judge() as judge, pytest.MonkeyPatch.context() as patch:
        patch.setenv(JUDGE_KEY_ENV, "test-key")
        judged = {"autointerp": [f"base_url={judge.url}", f"api_key_env={JUDGE_KEY_ENV}", "n_latents=3"]}
        request = RunRequest(
            sae_specs=[str(sae)],
            eval_names=",".join(sorted({spec.group or spec.name for spec in SPECS})),
            dataset=str(corpus),
            n_windows=32,
            context_size=CONTEXT_SIZE,
            results_dir=root / "results",
            artifacts_dir=root / "artifacts",
            device=device,
            config_overrides=[
                f"{spec.name}.{setting}"
                for spec in SPECS
                for setting in [*SMALL_RUNS.get(spec.name, []), *judged.get(spec.name, [])]
            ],
        )
        before = _untouchable_files()
        outcomes = run(request, model_loader=lambda name, device: long_model)
        assert _untouchable_files() == before, "an eval wrote into the working directory or an installed package"
        return outcomes


def _untouchable_files() -> set[str]:
    """The working directory's entries and every file inside the packages whose code the adapters call."""
    import os

    import sae_bench
    import sae_probes

    found = {f"cwd:{name}" for name in os.listdir()}
    for package in (sae_bench, sae_probes):
        root = Path(package.__file__).parent
        found |= {str(path) for path in root.rglob("*") if "__pycache__" not in path.parts}
    return found


@pytest.fixture(scope="module")
def records(run_outcomes) -> dict[str, EvalRecord]:
    failed = {o.eval_name: o.message for o in run_outcomes if o.status not in {"ok", "unavailable"}}
    assert not failed
    unavailable = {o.eval_name for o in run_outcomes if o.status == "unavailable"}
    assert unavailable == set(CANNOT_RUN_ON_THE_TINY_MODEL)
    return {o.eval_name: read_record(o.path) for o in run_outcomes if o.path is not None}


def record_of(spec: registry.EvalSpec, records: dict[str, EvalRecord]) -> EvalRecord:
    if spec.name in CANNOT_RUN_ON_THE_TINY_MODEL:
        pytest.skip(CANNOT_RUN_ON_THE_TINY_MODEL[spec.name])
    return records[spec.name]


def test_every_registered_eval_ran_or_said_why_not(run_outcomes):
    assert {o.eval_name for o in run_outcomes} == {spec.name for spec in SPECS}
    assert all(o.message for o in run_outcomes if o.status == "unavailable")


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_default_config_validates_and_is_documented(spec):
    config = spec.config_cls()
    assert config.model_dump() == spec.config_cls(**config.model_dump()).model_dump()
    undocumented = [name for name, field in spec.config_cls.model_fields.items() if not field.description]
    assert not undocumented, f"{spec.name}: fields without a docstring: {undocumented}"
    assert spec.description and spec.version >= 1


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_record_round_trips_through_writer_and_reader(spec, records, tmp_path):
    record = record_of(spec, records)
    assert record.eval_type_id == spec.name and record.provenance is not None
    assert record.provenance.eval_version == spec.version
    copy = tmp_path / "copy.json"
    write_record(copy, record)
    # NaN != NaN, so compare the serialised forms
    assert json.dumps(read_record(copy).model_dump(), sort_keys=True) == json.dumps(record.model_dump(), sort_keys=True)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_declared_metrics_exist_and_headlines_are_numbers(spec, records):
    record = record_of(spec, records)
    values = record.metrics()
    assert record.metric_info, f"{spec.name} declares no metrics"
    assert set(record.metric_info) <= set(values)
    labels = [info.label for info in record.metric_info.values()]
    assert len(labels) == len(set(labels)), f"{spec.name}: duplicate labels"
    headline = record.headline()
    assert headline
    for label, value in headline.items():
        # None: a part the SAE does not have (e.g. the Matryoshka levels of an SAE without that split)
        assert value is None or isinstance(value, int | float), f"{spec.name}.{label} = {value!r}"
    assert all(isinstance(info, MetricInfo) and info.description for info in record.metric_info.values())


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_metric_keys_are_pinned_per_version(spec, records):
    """Changing an eval's metrics means bumping its version (results of different versions never compare), then
    updating tests/contract/metric_keys.json."""
    pinned = json.loads(PINNED.read_text()) if PINNED.exists() else {}
    key = f"{spec.name}@v{spec.version}"
    assert key in pinned, f"pin {key}: {sorted(record_of(spec, records).metrics())}"
    assert pinned[key] == sorted(record_of(spec, records).metrics())


SAEBENCH_SPECS = [spec for spec in SPECS if spec.group == "saebench"]


@pytest.mark.parametrize("spec", SAEBENCH_SPECS, ids=lambda spec: spec.name)
def test_saebench_file_validates_with_saebench_output_model(spec, records):
    """SAE-Bench's own output model (named by the eval's result class) reads what we wrote."""
    from tsae_evals.evals.saebench.adapter import SaeBenchResult, validate_with_saebench

    # Only the return annotation: the others name types imported for type checking only.
    result_cls = eval(spec.fn.__annotations__["return"], spec.fn.__globals__)
    assert issubclass(result_cls, SaeBenchResult)
    validate_with_saebench(record_of(spec, records), result_cls.OUTPUT)
