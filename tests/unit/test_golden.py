"""The regression check: a fresh golden run passes `check --two-sided` against tests/golden/baseline (so a change
that shifts a metric fails CI), a degraded SAE fails it, unlike records are refused; `check` and the tolerance
measurement on hand-made records.

Regenerate the golden files with `.venv/bin/python -m tests.golden.regenerate` after a deliberate change."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from tests.golden import regenerate as golden
from tests.helpers import HOOK, write_result
from tsae_evals.cli.main import main
from tsae_evals.errors import UsageError
from tsae_evals.report.records import load_records
from tsae_evals.report.regression import (
    MeasuredEval,
    MetricNoise,
    Tolerances,
    build_tolerances,
    check,
    read_tolerances,
    write_tolerances,
)
from tsae_evals.runner import RunRequest

REGENERATE = "regenerate them with `.venv/bin/python -m tests.golden.regenerate` if the change is deliberate"


def _cli(command: str, *args: str) -> int:
    return main([command, *args])


# --- the golden run ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden evals rerun on the golden SAE (CPU, whatever --device says: the baseline was measured there)."""
    root = tmp_path_factory.mktemp("golden")
    golden.run_golden(golden.golden_sae(), root, root / "results")
    return root / "results"


@pytest.fixture(scope="module")
def degraded_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden SAE with half its decoder norm and decoder noise: reconstruction worsens, the encoder is intact."""
    root = tmp_path_factory.mktemp("degraded")
    sae = golden.golden_sae()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        noise = torch.randn(sae.W_dec.shape, generator=generator) / sae.W_dec.shape[1] ** 0.5
        sae.W_dec.mul_(0.5).add_(0.5 * noise)
    golden.run_golden(sae, root, root / "results", name="degraded_sae")
    return root / "results"


def test_the_golden_rerun_matches_the_baseline_two_sided(golden_results: Path, capsys) -> None:
    baseline = load_records([golden.BASELINE])
    current = load_records([golden_results])
    assert {loaded.eval_name for loaded in baseline.records} == set(golden.EVALS), f"golden files stale: {REGENERATE}"
    assert {loaded.sae.weights_hash for loaded in current.records} == {
        loaded.sae.weights_hash for loaded in baseline.records
    }, f"tests.helpers.tiny_sae no longer builds the golden SAE: {REGENERATE}"
    code = _cli("check", "--baseline", str(golden.BASELINE), "--results", str(golden_results), "--two-sided")
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if " FAIL " in line or line.startswith(("NOT COMPARABLE", "MISSING"))]
    assert code == 0, f"a metric moved on the tiny model ({REGENERATE}):\n" + "\n".join(failed[:40])
    assert out.rstrip().splitlines()[-1].startswith("PASS (two-sided)")


def test_a_degraded_sae_fails_the_one_sided_check(degraded_results: Path, capsys) -> None:
    code = _cli("check", "--baseline", str(golden.BASELINE), "--results", str(degraded_results))
    out = capsys.readouterr().out
    assert code == 1
    regressed = [line.split() for line in out.splitlines() if "FAIL regressed" in line]
    assert ["core", "expl_var", "↑"] in [line[:3] for line in regressed], out
    assert "== golden_sae → degraded_sae (other weights: " in out  # one SAE a side: paired whatever the names
    assert out.rstrip().splitlines()[-1].startswith("FAIL (one-sided)")


def test_a_baseline_of_another_eval_version_is_not_compared(golden_results: Path, tmp_path: Path, capsys) -> None:
    baseline = shutil.copytree(golden.BASELINE, tmp_path / "baseline")
    path = baseline / "core" / f"local_{golden.SAE_NAME}_eval_results.json"
    record = json.loads(path.read_text())
    record["provenance"]["eval_version"] = 2
    path.write_text(json.dumps(record))
    code = _cli("check", "--baseline", str(baseline), "--results", str(golden_results), "--two-sided")
    out = capsys.readouterr().out
    assert code == 2
    assert "golden_sae: core: not comparable: baseline vs current: eval_version 2 vs 1" in out
    assert out.rstrip().splitlines()[-1].startswith("NOT COMPARABLE")


def test_the_golden_tolerances_cover_every_baseline_metric() -> None:
    tolerances = read_tolerances(golden.BASELINE / "tolerances.json")
    assert tolerances.seeds == list(golden.SEEDS) and len(tolerances.seeds) >= 3
    for loaded in load_records([golden.BASELINE]).records:
        measured = tolerances.metrics[loaded.eval_name]
        assert set(loaded.numbers()) <= set(measured), loaded.eval_name
        for noise in measured.values():
            if noise.sd is not None:
                assert noise.tolerance == pytest.approx(tolerances.k * noise.sd)


# --- check on hand-made records ------------------------------------------------------------------------------

DECLARED = {
    "quality.score": ("score", True, True),
    "quality.error": ("error", False, True),
    "quality.count": ("count", None, False),
}
SD = {"quality.score": 0.01, "quality.error": 0.02, "quality.count": 1.0}
BASE = {"score": 0.5, "error": 0.2, "count": 10.0}


def _tolerances(sd: dict[str, float] = SD, k: float = 3.0, **setup: object) -> Tolerances:
    metrics = {
        key: MetricNoise(
            label=DECLARED[key][0], higher_is_better=DECLARED[key][1], values=[], n=5, sd=value, tolerance=k * value
        )
        for key, value in sd.items()
    }
    fields: dict[str, object] = dict(
        model="tiny-test-model", hook_name=HOOK, dataset="corpus.txt", n_windows=8, context_size=16, prepend_bos=True
    )
    fields.update(setup)
    return Tolerances(
        k=k,
        seeds=[0, 1, 2, 3, 4],
        sae="a",
        sae_weights_hash=None,
        evals={"toy": MeasuredEval(eval_version=1, config_hash="cfg0")},
        metrics={"toy": metrics},
        **fields,  # type: ignore[arg-type]
    )


def _write(folder: Path, sae: str = "a", **values: float) -> Path:
    metrics = {"quality": {**BASE, **values}}
    write_result(folder, "toy", sae, metrics, DECLARED)
    return folder


def _check(tmp_path: Path, two_sided: bool = False, tolerances: Tolerances | None = None, **values: float):  # type: ignore[no-untyped-def]
    baseline = load_records([_write(tmp_path / "baseline")])
    current = load_records([_write(tmp_path / "current", sae="b", **values)])
    return check(baseline, current, tolerances or _tolerances(), two_sided=two_sided)


def _verdict(report, label: str) -> str:  # type: ignore[no-untyped-def]
    return next(f"{item.status} {item.reason}".strip() for item in report.checks if item.label == label)


def test_a_regression_beyond_tolerance_fails(tmp_path: Path) -> None:
    report = _check(tmp_path, score=0.5 - 0.031)  # 3.1 SD worse, tolerance 3 SD
    assert report.exit_code == 1
    assert _verdict(report, "score") == "fail regressed by 3.1 SD"
    assert "FAIL regressed by 3.1 SD" in report.to_text()
    assert report.to_text().splitlines()[-1] == "FAIL (one-sided): 1 of 3 metric(s) failed"


def test_a_change_within_tolerance_passes(tmp_path: Path) -> None:
    report = _check(tmp_path, score=0.5 - 0.029, error=0.2 + 0.059, count=12.0)
    assert report.exit_code == 0 and not report.failures
    assert report.to_text().splitlines()[-1] == "PASS (one-sided): 3 metric(s) within tolerance"


def test_a_lower_is_better_metric_regresses_upwards(tmp_path: Path) -> None:
    assert _check(tmp_path, error=0.2 + 0.07).exit_code == 1
    assert _check(tmp_path / "down", error=0.2 - 0.07).exit_code == 0


def test_an_improvement_passes_one_sided_but_fails_two_sided(tmp_path: Path) -> None:
    one_sided = _check(tmp_path / "one", score=0.6)
    assert one_sided.exit_code == 0 and _verdict(one_sided, "score") == "pass improved by 10.0 SD"
    two_sided = _check(tmp_path / "two", two_sided=True, score=0.6)
    assert two_sided.exit_code == 1 and _verdict(two_sided, "score") == "fail changed by 10.0 SD"


def test_a_metric_without_direction_fails_only_two_sided(tmp_path: Path) -> None:
    assert _check(tmp_path / "one", count=20.0).exit_code == 0
    assert _check(tmp_path / "two", two_sided=True, count=20.0).exit_code == 1


def test_a_missing_metric_fails(tmp_path: Path) -> None:
    baseline = load_records([_write(tmp_path / "baseline")])
    write_result(tmp_path / "current", "toy", "b", {"quality": {"score": 0.5, "count": 10.0}}, DECLARED)
    report = check(baseline, load_records([tmp_path / "current"]), _tolerances())
    assert report.exit_code == 1 and _verdict(report, "error") == "fail missing from current results"


def test_a_missing_eval_or_sae_fails(tmp_path: Path) -> None:
    baseline = load_records([_write(tmp_path / "baseline", sae="a"), _write(tmp_path / "baseline", sae="b")])
    current = load_records([_write(tmp_path / "current", sae="a")])
    report = check(baseline, current, _tolerances())
    assert report.exit_code == 1 and report.missing == [
        "SAE b: no current results (pass --sae to choose which SAEs to check)"
    ]


def test_nan_against_a_number_fails_and_nan_against_nan_passes(tmp_path: Path) -> None:
    report = _check(tmp_path, score=math.nan)
    assert report.exit_code == 1 and _verdict(report, "score") == "fail NaN in current only"
    baseline = load_records([_write(tmp_path / "nan_base", score=math.nan)])
    current = load_records([_write(tmp_path / "nan_cur", sae="b", score=math.nan)])
    assert _verdict(check(baseline, current, _tolerances()), "score") == "pass both NaN"


def test_sd_zero_leaves_only_the_float_floor(tmp_path: Path) -> None:
    tolerances = _tolerances({**SD, "quality.score": 0.0})
    assert _check(tmp_path / "tiny", tolerances=tolerances, score=0.5 - 0.4e-6).exit_code == 0
    report = _check(tmp_path / "real", tolerances=tolerances, score=0.5 - 1e-5)
    assert report.exit_code == 1 and _verdict(report, "score") == "fail regressed by 1e-05 (SD 0 over seeds)"


def test_metrics_without_a_tolerance_are_listed_unchecked(tmp_path: Path) -> None:
    report = _check(tmp_path, tolerances=_tolerances({"quality.score": 0.01}), count=99.0)
    assert report.exit_code == 0 and [item.label for item in report.checks] == ["score"]
    assert "unchecked (no measured tolerance): a → b: toy: quality.error, quality.count" in report.to_text()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (dict(eval_version=2), "baseline vs current: eval_version 1 vs 2"),
        (dict(config_hash="cfg1"), "baseline vs current: config_hash cfg0 vs cfg1"),
        (dict(seed=3), "baseline vs current: seed 0 vs 3"),
        (dict(model="other"), "baseline vs current: model tiny-test-model vs other"),
    ],
)
def test_unlike_records_are_not_compared(tmp_path: Path, change: dict, expected: str) -> None:
    baseline = load_records([_write(tmp_path / "baseline")])
    write_result(tmp_path / "current", "toy", "b", {"quality": BASE}, DECLARED, **change)
    report = check(baseline, load_records([tmp_path / "current"]), _tolerances())
    assert report.exit_code == 2 and not report.checks
    assert report.not_comparable == [f"a → b: toy: not comparable: {expected}"]


def test_tolerances_of_another_version_or_setup_are_not_used(tmp_path: Path) -> None:
    other_version = _tolerances()
    other_version.evals["toy"] = MeasuredEval(eval_version=2, config_hash="cfg0")
    report = _check(tmp_path / "version", tolerances=other_version)
    assert report.exit_code == 2 and "tolerances measured under another setup" in report.not_comparable[0]
    assert "eval_version 2 vs 1" in report.not_comparable[0]
    report = _check(tmp_path / "windows", tolerances=_tolerances(n_windows=64))
    assert report.exit_code == 2 and "n_windows 64 vs 8" in report.not_comparable[0]


def test_saes_pair_by_name_when_either_side_holds_several(tmp_path: Path) -> None:
    baseline = load_records([_write(tmp_path / "baseline", sae="a"), _write(tmp_path / "baseline", sae="b")])
    current = load_records(
        [_write(tmp_path / "current", sae="a", score=0.4), _write(tmp_path / "current", sae="b", score=0.5)]
    )
    report = check(baseline, current, _tolerances())
    assert [pair.label for pair in report.pairs] == ["a", "b"]
    assert [(item.pair, item.label) for item in report.failures] == [("a", "score")]


# --- the CLI -------------------------------------------------------------------------------------------------


def test_check_without_a_tolerance_file_says_how_to_measure_one(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _write(tmp_path / "baseline")
    assert _cli("check", "--baseline", str(tmp_path / "baseline"), "--results", str(_write(tmp_path / "current"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no tolerance file" in err and "python -m tsae_evals tolerances --sae" in err


def test_check_names_and_skips_unreadable_files(tmp_path: Path, capsys) -> None:
    baseline = _write(tmp_path / "baseline")
    write_tolerances(baseline / "tolerances.json", _tolerances())
    current = _write(tmp_path / "current", sae="b")
    broken = current / "toy" / "local_broken_eval_results.json"
    broken.write_text("{not json")
    assert _cli("check", "--baseline", str(baseline), "--results", str(current)) == 0
    assert f"skipped {broken}: not readable JSON" in capsys.readouterr().out


def test_check_sae_pattern_picks_the_current_sae(tmp_path: Path, capsys) -> None:
    baseline = _write(tmp_path / "baseline", sae="ref")
    write_tolerances(baseline / "tolerances.json", _tolerances())
    current = _write(tmp_path / "current", sae="good")
    _write(current, sae="bad", score=0.1)
    assert _cli("check", "--baseline", str(baseline), "--results", str(current), "--sae", "good") == 0
    assert _cli("check", "--baseline", str(baseline), "--results", str(current), "--sae", "bad") == 1
    assert "ref → bad" in capsys.readouterr().out


def test_a_tolerance_file_round_trips_with_nan(tmp_path: Path) -> None:
    tolerances = _tolerances()
    tolerances.metrics["toy"]["quality.score"].values = [0.5, math.nan, None]
    write_tolerances(tmp_path / "t.json", tolerances)
    again = read_tolerances(tmp_path / "t.json")
    assert again.metrics["toy"]["quality.score"].values[2] is None
    assert math.isnan(again.metrics["toy"]["quality.score"].values[1])  # type: ignore[arg-type]
    (tmp_path / "bad.json").write_text('{"k": 3}')
    with pytest.raises(UsageError, match="is not a tolerance file"):
        read_tolerances(tmp_path / "bad.json")


# --- measuring tolerances ------------------------------------------------------------------------------------


def _seed_runs(tmp_path: Path, scores: list[float]) -> dict:
    runs = {}
    for seed, score in enumerate(scores):
        folder = tmp_path / f"seed-{seed}"
        write_result(folder, "toy", "a", {"quality": {**BASE, "score": score}}, DECLARED, seed=seed)
        runs[seed] = load_records([folder])
    return runs


def test_tolerances_are_k_sd_over_the_seeds(tmp_path: Path) -> None:
    tolerances = build_tolerances(_seed_runs(tmp_path, [0.50, 0.52, 0.54]), k=3.0)
    score = tolerances.metrics["toy"]["quality.score"]
    assert score.values == [0.50, 0.52, 0.54] and score.n == 3
    assert score.sd == pytest.approx(0.02) and score.tolerance == pytest.approx(0.06)
    assert tolerances.metrics["toy"]["quality.count"].sd == 0.0  # identical values: exactly 0, no rounding residue
    assert (tolerances.seeds, tolerances.evals["toy"].config_hash, tolerances.n_windows) == ([0, 1, 2], "cfg0", 8)


def test_fewer_than_three_seeds_are_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="2 seed"):
        build_tolerances(_seed_runs(tmp_path, [0.5, 0.6]))
    from tsae_evals.regression_noise import measure_tolerances

    def never(name: str, device: str) -> None:
        raise AssertionError("nothing may run before the seeds are checked")

    request = RunRequest(sae_specs=["unused"], eval_names="core", results_dir=tmp_path / "results")
    with pytest.raises(UsageError, match="at least 3 runs"):
        measure_tolerances(request, [0, 1], 3.0, tmp_path / "work", model_loader=never)
    with pytest.raises(UsageError, match="repeats a seed"):
        measure_tolerances(request, [0, 1, 1], 3.0, tmp_path / "work", model_loader=never)
    assert (
        _cli("tolerances", "--sae", "unused", "--evals", "core", "--seeds", "0,1", "--out", str(tmp_path / "t.json"))
        == 2
    )
    assert "at least 3 runs" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "work").exists()


def test_the_tolerances_command_writes_a_file_check_uses(tmp_path: Path, monkeypatch, capsys) -> None:
    from tests import helpers

    monkeypatch.setattr("tsae_evals.models.load_model", golden.golden_loader)
    sae = helpers.save_sae(golden.golden_sae(), tmp_path / "sae")
    corpus = helpers.write_corpus(tmp_path / "corpus.txt")
    work, out = tmp_path / "work", tmp_path / "tolerances.json"
    args = ["--sae", str(sae), "--evals", "temporal_stability,feature_lifetimes", "--seeds", "0,1,2", "--k", "2"]
    args += ["--n-windows", "8", "--context-size", "32", "--dataset", str(corpus), "--out", str(out)]
    assert _cli("tolerances", *args, "--work-dir", str(work)) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    tolerances = read_tolerances(out)
    assert (tolerances.seeds, tolerances.k, tolerances.n_windows) == ([0, 1, 2], 2.0, 8)
    assert sorted(tolerances.evals) == ["feature_lifetimes", "temporal_stability"]
    assert sorted(path.name for path in work.iterdir()) == ["seed-0", "seed-1", "seed-2"]
    check_args = ["--baseline", str(work / "seed-0"), "--tolerances", str(out)]
    assert _cli("check", *check_args, "--results", str(work / "seed-0"), "--two-sided") == 0
    assert _cli("check", *check_args, "--results", str(work / "seed-1")) == 2  # another seed reads other windows
    assert "not comparable: baseline vs current: seed 0 vs 1" in capsys.readouterr().out
