"""Registry behaviour and atomic, NaN-preserving result files."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import BaseModel

from tsae_evals import registry
from tsae_evals.errors import UsageError
from tsae_evals.results import write_json_atomic


def test_builtin_evals_are_registered_with_versions():
    names = {spec.name: spec for spec in registry.all_evals()}
    assert {"core", "temporal_stability"} <= names.keys()
    assert names["temporal_stability"].version >= 1 and names["temporal_stability"].group == "temporal"


def test_group_name_selects_its_evals():
    assert "temporal_stability" in [spec.name for spec in registry.parse_eval_names("temporal")]


def test_duplicate_registration_raises(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Cfg(BaseModel):
        pass

    @registry.register_eval("dup_test", version=1, config=Cfg)
    def first(ctx, cfg):
        """First."""

    with pytest.raises(ValueError, match="already registered"):

        @registry.register_eval("dup_test", version=1, config=Cfg)
        def second(ctx, cfg):
            """Second."""


def test_a_same_named_function_from_another_module_cannot_replace_a_builtin(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Cfg(BaseModel):
        pass

    def core(ctx, cfg):
        """An impostor with the built-in's name and qualname."""

    core.__module__ = "some_plugin.evals"
    with pytest.raises(ValueError, match="already registered by tsae_evals.evals.saebench.core.eval.core"):
        registry.register_eval("core", version=99, config=Cfg)(core)
    assert registry.get_eval("core").version == 1


def test_a_plugin_reusing_a_builtin_name_is_a_usage_error(monkeypatch):
    class EntryPoint:
        name, value = "clash", "clash_plugin:evals"

        def load(self):
            registry.register_eval("temporal_stability", version=1, config=BaseModel)(lambda ctx, cfg: None)

    registry.all_evals()  # built-ins registered (their modules stay imported)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()])
    with pytest.raises(UsageError, match="plugin 'clash'.*already registered"):
        registry.all_evals()


def test_unknown_names_share_one_did_you_mean():
    with pytest.raises(UsageError, match="did you mean temporal_stability"):
        registry.get_eval("temporal_stabilty")
    with pytest.raises(UsageError, match="did you mean temporal"):
        registry.parse_eval_names("core,temporl")


def test_records_of_schema_1_still_load(tmp_path):
    """A file written before the record was versioned at the top level (schema_version inside provenance)."""
    from tsae_evals.results import RECORD_SCHEMA_VERSION, read_record

    old = tmp_path / "old.json"
    old.write_text(json.dumps(OLD_RECORD))
    record = read_record(old)
    assert record.schema_version == RECORD_SCHEMA_VERSION and record.provenance is not None
    assert record.provenance.eval_version == 1 and record.metrics()["jaccard.adjacent_jaccard"] == 0.07
    assert record.metric_info == {}


def test_unreadable_records_name_the_file(tmp_path):
    from tsae_evals.results import RecordError, read_record

    partial = tmp_path / "partial.json"
    partial.write_text('{"eval_type_id": "core", ')
    with pytest.raises(RecordError, match="partial.json"):
        read_record(partial)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"eval_type_id": "core"}))
    with pytest.raises(RecordError, match="wrong.json: eval_config"):
        read_record(wrong)


def test_result_summary_comes_from_declared_headlines():
    from tsae_evals.results import EvalResult, MetricCategory, metric

    class Scores(MetricCategory):
        good: float = metric(label="good", higher_is_better=True, headline=True)
        """A headline."""
        quiet: int = metric(label="quiet", higher_is_better=None)
        """Not a headline."""

    class Metrics(BaseModel):
        scores: Scores

    class Result(EvalResult):
        metrics: Metrics

    result = Result(metrics=Metrics(scores=Scores(good=0.5, quiet=3)))
    assert result.summary() == {"good": 0.5}
    assert result.metrics_dict() == {"scores": {"good": 0.5, "quiet": 3}}
    info = result.metric_info()
    assert info["scores.good"].higher_is_better is True and info["scores.quiet"].description == "Not a headline."


def test_unknown_eval_without_close_match_points_to_list():
    with pytest.raises(UsageError, match="tsae_evals list"):
        registry.get_eval("zzzzzz")


def test_atomic_write_keeps_nan_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "core" / "x.json"
    write_json_atomic(path, {"metric": float("nan"), "ok": 1.0})
    assert math.isnan(json.loads(path.read_text())["metric"])
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"v": object.__new__(type("Unserialisable", (), {"__str__": None}))})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


OLD_RECORD = {
    "eval_type_id": "temporal_stability",
    "eval_config": {"max_lag": 10},
    "eval_id": "3f1",
    "datetime_epoch_millis": 1763900000000,
    "eval_result_metrics": {"jaccard": {"adjacent_jaccard": 0.07}},
    "eval_result_details": [],
    "sae_bench_commit_hash": "sae-bench==0.6.0",
    "sae_lens_id": "sae",
    "sae_lens_release_id": "local",
    "sae_lens_version": "6.54.12",
    "sae_cfg_dict": {},
    "eval_result_unstructured": {},
    "provenance": {
        "schema_version": 1,
        "tsae_evals_version": "0.1.0",
        "eval_name": "temporal_stability",
        "eval_version": 1,
        "config_hash": "abc",
        "git_revision": None,
        "git_dirty": None,
        "model": "smollm2-135m-instruct",
        "hook_name": "blocks.6.hook_resid_post",
        "dataset": "sae-probes",
        "n_windows": 64,
        "context_size": 128,
        "prepend_bos": True,
        "seed": 0,
        "device": "cpu",
        "package_versions": {},
        "python_version": "3.11",
        "wall_time_s": 1.0,
        "preflight": {"status": "pass", "problems": [], "warnings": [], "probe_tokens": 100},
    },
}
