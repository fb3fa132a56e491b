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
from tsae_evals import registry
from tsae_evals.results import EvalRecord, MetricInfo, read_record, write_record
from tsae_evals.runner import RunRequest, run

SPECS = registry.all_evals()
PINNED = Path(__file__).with_name("metric_keys.json")
CONTEXT_SIZE = 80  # the defaults of causal_interventions need 70 positions


@pytest.fixture(scope="module")
def long_model(device):
    return helpers.tiny_model(n_ctx=CONTEXT_SIZE, device=device)


@pytest.fixture(scope="module")
def records(long_model, tmp_path_factory, device) -> dict[str, EvalRecord]:
    """Every registered eval with its default config, in one run (as users run them)."""
    root = tmp_path_factory.mktemp("evals")
    sae = helpers.save_sae(helpers.tiny_sae(), root / "tiny_sae")
    corpus = helpers.write_corpus(root / "corpus.txt", words_per_document=200)
    request = RunRequest(
        sae_specs=[str(sae)],
        eval_names=",".join(spec.name for spec in SPECS),
        dataset=str(corpus),
        n_windows=32,
        context_size=CONTEXT_SIZE,
        results_dir=root / "results",
        device=device,
    )
    outcomes = run(request, model_loader=lambda name, device: long_model)
    failed = {o.eval_name: o.message for o in outcomes if o.status != "ok"}
    assert not failed
    return {o.eval_name: read_record(o.path) for o in outcomes if o.path is not None}


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_default_config_validates_and_is_documented(spec):
    config = spec.config_cls()
    assert config.model_dump() == spec.config_cls(**config.model_dump()).model_dump()
    undocumented = [name for name, field in spec.config_cls.model_fields.items() if not field.description]
    assert not undocumented, f"{spec.name}: fields without a docstring: {undocumented}"
    assert spec.description and spec.version >= 1


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_record_round_trips_through_writer_and_reader(spec, records, tmp_path):
    record = records[spec.name]
    assert record.eval_type_id == spec.name and record.provenance is not None
    assert record.provenance.eval_version == spec.version
    copy = tmp_path / "copy.json"
    write_record(copy, record)
    # NaN != NaN, so compare the serialised forms
    assert json.dumps(read_record(copy).model_dump(), sort_keys=True) == json.dumps(record.model_dump(), sort_keys=True)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_declared_metrics_exist_and_headlines_are_numbers(spec, records):
    record = records[spec.name]
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
    assert key in pinned, f"pin {key}: {sorted(records[spec.name].metrics())}"
    assert pinned[key] == sorted(records[spec.name].metrics())


def test_core_file_validates_with_saebench_output_model(records):
    from pydantic import TypeAdapter
    from sae_bench.evals.core.eval_output import CoreEvalOutput

    TypeAdapter(CoreEvalOutput).validate_python(records["core"].model_dump())
