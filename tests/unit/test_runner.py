"""`run` end to end on the tiny model: both evals write SAE-Bench-format JSON; failures stay contained."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from tests import helpers
from tsae_evals import registry
from tsae_evals.errors import UsageError
from tsae_evals.runner import RunRequest, exit_code, run

SAEBENCH_KEYS = {
    "eval_type_id",
    "eval_config",
    "eval_id",
    "datetime_epoch_millis",
    "eval_result_metrics",
    "eval_result_details",
    "sae_bench_commit_hash",
    "sae_lens_id",
    "sae_lens_release_id",
    "sae_lens_version",
    "sae_cfg_dict",
    "eval_result_unstructured",
}
FAST_CORE = [
    "core.batch_size_prompts=2",
    "core.n_eval_reconstruction_batches=1",
    "core.n_eval_sparsity_variance_batches=2",
]


_DEVICE = "cpu"


@pytest.fixture(autouse=True)
def _run_on_the_test_device(device, monkeypatch):
    monkeypatch.setitem(globals(), "_DEVICE", device)


def _request(sae_dir: Path, corpus_file: Path, results_dir: Path, evals: str, **overrides) -> RunRequest:
    fields = dict(
        sae_specs=[str(sae_dir)],
        eval_names=evals,
        dataset=str(corpus_file),
        n_windows=12,
        context_size=32,
        batch_size=4,
        results_dir=results_dir,
        config_overrides=list(FAST_CORE) if "core" in evals else [],
        device=_DEVICE,
    )
    fields.update(overrides)
    return RunRequest(**fields)


def _loader(tiny_model):
    return lambda name, device: tiny_model


def test_core_and_temporal_stability_write_saebench_json(tiny_model, sae_dir, corpus_file, tmp_path):
    request = _request(sae_dir, corpus_file, tmp_path / "results", "core,temporal_stability")
    outcomes = run(request, model_loader=_loader(tiny_model))
    assert [(o.eval_name, o.status, o.message) for o in outcomes] == [
        ("core", "ok", ""),
        ("temporal_stability", "ok", ""),
    ]
    for outcome in outcomes:
        record = json.loads(outcome.path.read_text())
        assert record.keys() >= SAEBENCH_KEYS
        assert record["eval_type_id"] == outcome.eval_name
        assert record["sae_lens_release_id"] == "local" and record["sae_lens_id"] == "tiny_sae"
        provenance = record["provenance"]
        assert provenance["model"] == helpers.TINY_MODEL_NAME and provenance["hook_name"] == helpers.HOOK
        assert provenance["seed"] == 0 and provenance["package_versions"]["sae-bench"] == "0.6.0"
        assert provenance["preflight"]["status"] in {"pass", "warn"}
    core = json.loads(outcomes[0].path.read_text())["eval_result_metrics"]
    assert set(core) >= {
        "model_behavior_preservation",
        "model_performance_preservation",
        "reconstruction_quality",
        "shrinkage",
        "sparsity",
        "misc_metrics",
    }
    assert math.isfinite(core["model_performance_preservation"]["ce_loss_without_sae"])
    assert core["sparsity"]["l0"] > 0
    # the per-latent details are SAE-Bench's CoreFeatureMetric rows, one per latent
    assert len(json.loads(outcomes[0].path.read_text())["eval_result_details"]) == 64
    assert outcomes[0].path.parent.name == "core" and outcomes[1].path.parent.name == "temporal_stability"


def test_core_matches_a_hand_computed_l0(tiny_model, sae_dir, corpus_file, tmp_path):
    """SAE-Bench's L0 on our windows equals the mean active count we compute on the same non-special tokens."""
    request = _request(sae_dir, corpus_file, tmp_path / "results", "core")
    outcome = run(request, model_loader=_loader(tiny_model))[0]
    l0 = json.loads(outcome.path.read_text())["eval_result_metrics"]["sparsity"]["l0"]
    from tsae_evals.data import load_documents, make_windows
    from tsae_evals.saes import load_sae, resolve_sae

    windows = make_windows(tiny_model.tokenizer, load_documents(str(corpus_file)), context_size=32, n_windows=4)
    sae = load_sae(resolve_sae(str(sae_dir)))
    _, cache = tiny_model.run_with_cache(windows.tokens, names_filter=[helpers.HOOK])
    active = (sae.encode(cache[helpers.HOOK][:, 1:]) > 0).sum(-1).float()  # BOS is ignored by SAE-Bench too
    assert l0 == pytest.approx(float(active.mean()), rel=1e-4)


def test_a_failing_eval_keeps_the_other_results(tiny_model, sae_dir, corpus_file, tmp_path, monkeypatch):
    from tsae_evals.evals.temporal_stability.config import TemporalStabilityConfig

    def explode(ctx, cfg):
        """Always fails."""
        raise RuntimeError("boom")

    monkeypatch.setitem(
        registry._REGISTRY,
        "exploding",
        registry.EvalSpec(
            name="exploding", version=1, description="fails", config_cls=TemporalStabilityConfig, fn=explode, group=None
        ),
    )
    request = _request(sae_dir, corpus_file, tmp_path / "results", "exploding,temporal_stability")
    outcomes = run(request, model_loader=_loader(tiny_model))
    assert [o.status for o in outcomes] == ["failed", "ok"]
    assert "boom" in outcomes[0].message
    assert outcomes[1].path.exists()
    assert not (tmp_path / "results" / "exploding").exists()


def test_degenerate_sae_is_skipped_unless_allowed(tiny_model, corpus_file, tmp_path):
    zeroed = helpers.tiny_sae()
    with torch.no_grad():
        for parameter in zeroed.parameters():
            parameter.zero_()
    sae_dir = helpers.save_sae(zeroed, tmp_path / "zeroed")
    request = _request(sae_dir, corpus_file, tmp_path / "results", "temporal_stability")
    skipped = run(request, model_loader=_loader(tiny_model))[0]
    assert skipped.status == "skipped" and "exactly zero" in skipped.message
    assert not (tmp_path / "results").exists()

    request.allow_degenerate = True
    forced = run(request, model_loader=_loader(tiny_model))[0]
    record = json.loads(forced.path.read_text())
    assert record["provenance"]["preflight"]["status"] == "fail"
    assert any("exactly zero" in p for p in record["provenance"]["preflight"]["problems"])


def test_d_in_mismatch_and_unknown_hook_are_usage_errors(tiny_model, corpus_file, tmp_path):
    wide = helpers.save_sae(helpers.tiny_sae(d_in=48), tmp_path / "wide")
    with pytest.raises(UsageError, match="d_in 48"):
        run(_request(wide, corpus_file, tmp_path / "r", "temporal_stability"), model_loader=_loader(tiny_model))
    elsewhere = helpers.save_sae(helpers.tiny_sae(hook_name="blocks.9.hook_resid_post"), tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="unknown hook .* on model"):
        run(_request(elsewhere, corpus_file, tmp_path / "r", "temporal_stability"), model_loader=_loader(tiny_model))
    assert not (tmp_path / "r").exists()


def test_config_overrides_are_validated(tiny_model, sae_dir, corpus_file, tmp_path):
    bad = _request(
        sae_dir, corpus_file, tmp_path / "r", "temporal_stability", config_overrides=["temporal_stability.max_lag=0"]
    )
    with pytest.raises(UsageError, match="max_lag"):
        run(bad, model_loader=_loader(tiny_model))
    unknown = _request(
        sae_dir, corpus_file, tmp_path / "r", "temporal_stability", config_overrides=["temporal_stability.nope=1"]
    )
    with pytest.raises(UsageError, match="nope"):
        run(unknown, model_loader=_loader(tiny_model))


def test_two_saes_with_the_same_directory_name_are_refused(tiny_model, corpus_file, tmp_path):
    first = helpers.save_sae(helpers.tiny_sae(seed=1), tmp_path / "a" / "sae")
    second = helpers.save_sae(helpers.tiny_sae(seed=2), tmp_path / "b" / "sae")
    request = _request(first, corpus_file, tmp_path / "r", "temporal_stability", sae_specs=[f"{first},{second}"])
    with pytest.raises(UsageError, match="same name"):
        run(request, model_loader=_loader(tiny_model))


def test_several_saes_share_one_model_and_each_gets_its_file(tiny_model, corpus_file, tmp_path):
    first = helpers.save_sae(helpers.tiny_sae(seed=1), tmp_path / "first")
    second = helpers.save_sae(helpers.tiny_sae(seed=2), tmp_path / "second")
    loads = []

    def counting_loader(name, device):
        loads.append(name)
        return tiny_model

    request = _request(first, corpus_file, tmp_path / "r", "temporal_stability", sae_specs=[str(first), str(second)])
    outcomes = run(request, model_loader=counting_loader)
    assert loads == [helpers.TINY_MODEL_NAME]
    assert sorted(o.path.name for o in outcomes) == [
        "local_first_eval_results.json",
        "local_second_eval_results.json",
    ]


def _count_forwards(monkeypatch) -> list[tuple[int, tuple[str, ...]]]:
    from tsae_evals import context

    calls: list[tuple[int, tuple[str, ...]]] = []
    original = context.run_to_hooks

    def counting(model, tokens, hooks, device):
        calls.append((tokens.shape[0], tuple(hooks)))
        return original(model, tokens, hooks, device)

    monkeypatch.setattr(context, "run_to_hooks", counting)
    return calls


def test_streaming_evals_share_one_forward_per_batch_and_match_running_alone(
    tiny_model, sae_dir, corpus_file, tmp_path, monkeypatch
):
    calls = _count_forwards(monkeypatch)
    both = _request(
        sae_dir, corpus_file, tmp_path / "both", "temporal_stability,feature_lifetimes", n_windows=16, batch_size=8
    )
    fused = run(both, model_loader=_loader(tiny_model))
    assert [n for n, _ in calls] == [8] + [8] * 2  # preflight probe, then one forward per batch of 8 for both evals
    for outcome in fused:
        alone = run(
            _request(sae_dir, corpus_file, tmp_path / outcome.eval_name, outcome.eval_name, n_windows=16, batch_size=8),
            model_loader=_loader(tiny_model),
        )[0]
        fused_metrics = json.loads(outcome.path.read_text())["eval_result_metrics"]
        assert fused_metrics == json.loads(alone.path.read_text())["eval_result_metrics"]


def test_many_saes_share_one_forward_per_batch_across_hooks(tiny_model, corpus_file, tmp_path, monkeypatch):
    """Three SAEs on two hooks: one preflight forward and one forward per batch for all of them, each reading
    every hook it needs; every SAE's metrics equal its metrics when run alone."""
    saes = [
        helpers.save_sae(helpers.tiny_sae(seed=1), tmp_path / "a"),
        helpers.save_sae(helpers.tiny_sae(seed=2), tmp_path / "b"),
        helpers.save_sae(helpers.tiny_sae(seed=3, hook_name="blocks.1.hook_resid_post"), tmp_path / "c"),
    ]
    calls = _count_forwards(monkeypatch)
    evals = "temporal_stability,feature_lifetimes"
    request = _request(saes[0], corpus_file, tmp_path / "together", evals, sae_specs=[str(p) for p in saes])
    together = run(request, model_loader=_loader(tiny_model))
    assert [o.status for o in together] == ["ok"] * 6
    hooks = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
    assert calls == [(8, hooks), (4, hooks), (4, hooks), (4, hooks)]  # 12 windows in batches of 4
    for outcome, sae in zip(together[::2], saes, strict=True):
        alone = run(_request(sae, corpus_file, tmp_path / f"alone-{sae.name}", evals), model_loader=_loader(tiny_model))
        for shared, single in zip([outcome, together[together.index(outcome) + 1]], alone, strict=True):
            assert (
                json.loads(shared.path.read_text())["eval_result_metrics"]
                == json.loads(single.path.read_text())["eval_result_metrics"]
            )


def test_existing_results_are_reused_unless_something_changed(tiny_model, sae_dir, corpus_file, tmp_path, monkeypatch):
    results = tmp_path / "results"
    first = run(_request(sae_dir, corpus_file, results, "temporal_stability"), model_loader=_loader(tiny_model))[0]
    written = first.path.read_text()
    calls = _count_forwards(monkeypatch)
    loads = []

    def counting_loader(name, device):
        loads.append(name)
        return tiny_model

    again = run(_request(sae_dir, corpus_file, results, "temporal_stability"), model_loader=counting_loader)[0]
    assert again.status == "reused" and calls == [] and loads == []  # no model load, not even a preflight forward
    assert json.dumps(again.summary) == json.dumps(first.summary) and first.path.read_text() == written
    forced = run(
        _request(sae_dir, corpus_file, results, "temporal_stability", force=True), model_loader=_loader(tiny_model)
    )[0]
    assert forced.status == "ok" and calls
    changed_config = _request(
        sae_dir, corpus_file, results, "temporal_stability", config_overrides=["temporal_stability.max_lag=3"]
    )
    assert run(changed_config, model_loader=_loader(tiny_model))[0].status == "ok"
    more_windows = _request(sae_dir, corpus_file, results, "temporal_stability", n_windows=16)
    assert run(more_windows, model_loader=_loader(tiny_model))[0].status == "ok"
    helpers.save_sae(helpers.tiny_sae(seed=5), sae_dir)  # new weights under the same name
    assert run(more_windows, model_loader=_loader(tiny_model))[0].status == "ok"


def test_a_killed_sweep_continues_where_it_stopped(tiny_model, corpus_file, tmp_path, monkeypatch):
    """The first SAE's results were written before the run died; rerunning computes only the second's."""
    saes = [helpers.save_sae(helpers.tiny_sae(seed=s), tmp_path / f"sae{s}") for s in (1, 2)]
    results = tmp_path / "results"
    run(_request(saes[0], corpus_file, results, "temporal_stability"), model_loader=_loader(tiny_model))
    sweep = _request(saes[0], corpus_file, results, "temporal_stability", sae_specs=[str(p) for p in saes])
    assert [o.status for o in run(sweep, model_loader=_loader(tiny_model))] == ["reused", "ok"]


def test_result_files_are_readable_by_others(tiny_model, sae_dir, corpus_file, tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        outcome = run(
            _request(sae_dir, corpus_file, tmp_path / "r", "temporal_stability"), model_loader=_loader(tiny_model)
        )[0]
    finally:
        os.umask(previous)
    assert outcome.path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_fails_that_eval_only_and_keeps_the_others(
    tiny_model, sae_dir, corpus_file, tmp_path, monkeypatch
):
    import errno

    from tsae_evals import results as results_module

    original = results_module.write_record

    def disk_full_for_lifetimes(path, record):
        if record.eval_type_id == "feature_lifetimes":
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, record)

    monkeypatch.setattr(results_module, "write_record", disk_full_for_lifetimes)
    request = _request(sae_dir, corpus_file, tmp_path / "r", "temporal_stability,feature_lifetimes")
    outcomes = run(request, model_loader=_loader(tiny_model))
    assert [o.status for o in outcomes] == ["ok", "failed"]
    assert "feature_lifetimes" in outcomes[1].message and "No space left on device" in outcomes[1].message
    assert outcomes[0].path.exists()
    assert not list((tmp_path / "r").glob("feature_lifetimes/*"))


def test_windows_follow_the_saes_prepend_bos(tiny_model, corpus_file, tmp_path):
    from tsae_evals.results import read_record

    sae = helpers.tiny_sae()
    sae.cfg.metadata.prepend_bos = False
    no_bos = helpers.save_sae(sae, tmp_path / "no_bos")
    with_bos = helpers.save_sae(helpers.tiny_sae(), tmp_path / "with_bos")
    request = _request(
        no_bos, corpus_file, tmp_path / "r", "temporal_stability", sae_specs=[str(no_bos), str(with_bos)]
    )
    outcomes = run(request, model_loader=_loader(tiny_model))
    records = [read_record(o.path) for o in outcomes]
    assert [r.provenance.prepend_bos for r in records] == [False, True]
    # without BOS every position is text: one more scored token per window
    tokens = [r.eval_result_metrics["reference"]["tokens_evaluated"] for r in records]
    assert tokens[0] == tokens[1] + 12


def test_an_unavailable_eval_is_refused_when_named_and_reported_when_reached_through_a_group(
    tiny_model, sae_dir, corpus_file, tmp_path, monkeypatch
):
    from tsae_evals.errors import Unavailable
    from tsae_evals.evals.temporal_stability.config import TemporalStabilityConfig
    from tsae_evals.summary import format_summary

    def needs_endpoint(shape, cfg):
        raise Unavailable("needs_judge needs an LLM endpoint", "pass one")

    def never(ctx, cfg):
        """Must not run."""
        raise AssertionError("an unavailable eval ran")

    temporal = registry.get_eval("temporal_stability")
    spec = registry.EvalSpec(
        name="needs_judge",
        version=1,
        description="needs an endpoint",
        config_cls=TemporalStabilityConfig,
        fn=never,
        group="judged",
        check=needs_endpoint,
    )
    monkeypatch.setitem(registry._REGISTRY, "needs_judge", spec)
    # a group of two: the unavailable eval and one that can run
    monkeypatch.setitem(
        registry._REGISTRY, "stability", dataclasses.replace(temporal, name="stability", group="judged")
    )

    named = _request(sae_dir, corpus_file, tmp_path / "named", "needs_judge,stability")
    with pytest.raises(Unavailable, match="LLM endpoint"):
        run(named, model_loader=_loader(tiny_model))
    assert not (tmp_path / "named").exists()

    grouped = _request(sae_dir, corpus_file, tmp_path / "grouped", "judged")
    outcomes = run(grouped, model_loader=_loader(tiny_model))
    by_name = {o.eval_name: o for o in outcomes}
    assert by_name["needs_judge"].status == "unavailable" and by_name["stability"].status == "ok"
    assert exit_code(outcomes) == 0
    assert "not run: needs_judge: needs_judge needs an LLM endpoint. Fix: pass one" in format_summary(outcomes)
