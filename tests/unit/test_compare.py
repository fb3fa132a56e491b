"""`compare`: Δ, verdicts by declared direction, p-values only where seeds or declared intervals allow one, and the
refusals; plus the interval declarations that feed it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from tests.helpers import write_result
from tsae_evals.cli.main import main
from tsae_evals.results import EvalRecord, MetricInfo, result_path

DECLARED = {
    "scores.good": MetricInfo(label="good", higher_is_better=True, headline=True),
    "scores.low": MetricInfo(label="low", higher_is_better=False, headline=True),
    "scores.count": MetricInfo(label="count", higher_is_better=None, headline=True),
    "scores.quiet": MetricInfo(label="quiet", higher_is_better=True),
}
WITH_INTERVAL = {
    "scores.good": MetricInfo(
        label="good", higher_is_better=True, headline=True, interval=("scores.good_lo", "scores.good_hi")
    ),
    "scores.good_lo": MetricInfo(label="good_lo", higher_is_better=None),
    "scores.good_hi": MetricInfo(label="good_hi", higher_is_better=None),
}


def write(
    folder: Path,
    sae_id: str,
    metrics: dict[str, float],
    *,
    declared: dict[str, MetricInfo] = DECLARED,
    eval_name: str = "toy",
    eval_version: int = 1,
    config_hash: str = "cfg0",
    model: str = "tiny-test-model",
) -> Path:
    """A record as the runner writes it, with hand-chosen `scores.*` metrics."""
    return write_result(
        folder, eval_name, sae_id, {"scores": metrics}, declared,
        eval_version=eval_version, config_hash=config_hash, model=model,
    )  # fmt: skip


def compare(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `compare` as the CLI does (UsageError -> exit 2)."""
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def csv_rows(out: str) -> dict[str, dict[str, str]]:
    import csv
    import io

    return {row["metric"]: row for row in csv.DictReader(io.StringIO(out))}


def test_seeds_give_delta_verdicts_and_welch_p(tmp_path, capsys):
    base_good, new_good = [0.50, 0.52, 0.51], [0.60, 0.63]
    base_low, new_low = [2.0, 2.2, 2.1], [2.5, 2.9]
    for i, (good, low) in enumerate(zip(base_good, base_low, strict=True)):
        write(tmp_path / "base", f"relu-s{i}", {"good": good, "low": low, "count": 5, "quiet": 1.0})
    for i, (good, low) in enumerate(zip(new_good, new_low, strict=True)):
        write(tmp_path / "new", f"relu-s{i}", {"good": good, "low": low, "count": 5, "quiet": 2.0})

    code, out, _ = compare([str(tmp_path / "base"), str(tmp_path / "new"), "--format", "csv"], capsys)
    assert code == 0
    rows = csv_rows(out)
    assert set(rows) == {"good", "low", "count"}  # headline metrics by default
    good, low, count = rows["good"], rows["low"], rows["count"]
    assert float(good["delta"]) == pytest.approx(sum(new_good) / 2 - sum(base_good) / 3)
    assert float(good["rel_delta"]) == pytest.approx(float(good["delta"]) / (sum(base_good) / 3))
    assert (good["verdict"], low["verdict"], count["verdict"]) == ("better", "worse", "same")
    expected = stats.ttest_ind(new_good, base_good, equal_var=False).pvalue
    assert float(good["p"]) == pytest.approx(expected, rel=1e-9)
    assert float(good["base_sd"]) == pytest.approx(stats.tstd(base_good))
    assert (good["base_n"], good["new_n"]) == ("3", "2")
    assert good["significant"] == str(expected < 0.05)
    assert "Welch" in good["basis"] and "seeds" in good["basis"]
    assert float(low["p"]) == pytest.approx(stats.ttest_ind(new_low, base_low, equal_var=False).pvalue, rel=1e-9)
    assert count["p"] == ""  # 5 everywhere: no spread, no test

    code, out, _ = compare([str(tmp_path / "base"), str(tmp_path / "new"), "--all"], capsys)
    assert code == 0
    assert "| quiet ↑ |" in out and "| good ↑ |" in out and "| low ↓ |" in out


def test_declared_intervals_give_a_z_test(tmp_path, capsys):
    write(tmp_path, "a", {"good": 0.50, "good_lo": 0.46, "good_hi": 0.54}, declared=WITH_INTERVAL)
    write(tmp_path, "b", {"good": 0.60, "good_lo": 0.55, "good_hi": 0.65}, declared=WITH_INTERVAL)

    argv = [str(tmp_path), str(tmp_path), "--base-sae", "a", "--new-sae", "b", "--format", "csv"]
    code, out, _ = compare(argv, capsys)
    assert code == 0
    row = csv_rows(out)["good"]
    # by hand: SE = (hi - lo) / (2 * 1.959964), z = Δ / sqrt(SE_a² + SE_b²), p = 2 (1 - Φ(|z|))
    se_a, se_b = 0.08 / (2 * 1.959964), 0.10 / (2 * 1.959964)
    z = 0.10 / math.sqrt(se_a**2 + se_b**2)
    assert float(row["p"]) == pytest.approx(2 * (1 - stats.norm.cdf(z)), rel=1e-5)
    assert row["verdict"] == "better" and "interval" in row["basis"]


def test_no_seeds_and_no_interval_gives_no_p(tmp_path, capsys):
    write(tmp_path / "base", "relu", {"good": 0.5, "low": 1.0, "count": 3, "quiet": 0.0})
    write(tmp_path / "new", "topk", {"good": 0.4, "low": 1.0, "count": 4, "quiet": 0.0})

    code, out, _ = compare([str(tmp_path / "base"), str(tmp_path / "new")], capsys)
    assert code == 0
    good = next(line for line in out.splitlines() if line.startswith("| good"))
    assert "worse" in good and "no seeds or interval" in good
    assert good.split("|")[7].strip() == ""  # the p column stays empty
    assert "| count |" in out and "changed" in out
    assert "- BASE: relu" in out and "- NEW: topk" in out  # one variant a side: paired across names


def test_pairs_by_variant_and_names_the_one_sided(tmp_path, capsys):
    for side in ("base", "new"):
        for sae in ("relu-s0", "relu-s1", "topk-s0"):
            write(tmp_path / side, sae, {"good": 0.5 if side == "base" else 0.6, "low": 1.0, "count": 1})
    write(tmp_path / "base", "pca-s0", {"good": 0.1, "low": 1.0, "count": 1})
    write(tmp_path / "new", "relu-s0", {"x": 1.0}, declared={}, eval_name="other")

    code, out, _ = compare([str(tmp_path / "base"), str(tmp_path / "new"), "--format", "md"], capsys)
    assert code == 0
    assert "| relu | good ↑ |" in out and "| topk | good ↑ |" in out  # a sae column when several pairs
    assert "pca: only in BASE" in out
    assert "other: only in NEW for relu" in out


def test_different_eval_versions_are_refused(tmp_path, capsys):
    write(tmp_path / "base", "relu", {"good": 0.5, "low": 1.0, "count": 3})
    write(tmp_path / "new", "relu", {"good": 0.6, "low": 1.0, "count": 3}, eval_version=2)

    code, out, err = compare([str(tmp_path / "base"), str(tmp_path / "new")], capsys)
    assert code == 2 and out == ""
    assert "toy" in err and "eval version 1 in BASE" in err and "eval version 2 in NEW" in err
    assert "rerun one side with the same eval version" in err


def test_different_configs_and_setups_are_refused(tmp_path, capsys):
    write(tmp_path / "base", "relu", {"good": 0.5})
    write(tmp_path / "new", "relu", {"good": 0.6}, config_hash="cfg1")
    code, _, err = compare([str(tmp_path / "base"), str(tmp_path / "new")], capsys)
    assert code == 2 and "config hash cfg0 in BASE" in err and "config hash cfg1 in NEW" in err

    write(tmp_path / "other", "relu", {"good": 0.6}, model="another-model")
    code, _, err = compare([str(tmp_path / "base"), str(tmp_path / "other")], capsys)
    assert code == 2 and "not comparable" in err
    code, out, _ = compare([str(tmp_path / "base"), str(tmp_path / "other"), "--allow-mixed"], capsys)
    assert code == 0 and "| good ↑ |" in out


def test_malformed_file_is_skipped_and_named(tmp_path, capsys):
    write(tmp_path / "base", "relu", {"good": 0.5, "low": 1.0, "count": 3})
    write(tmp_path / "new", "relu", {"good": 0.6, "low": 1.0, "count": 3})
    broken = tmp_path / "new" / "toy" / "local_broken_eval_results.json"
    broken.write_text("{not json")

    code, out, err = compare([str(tmp_path / "base"), str(tmp_path / "new")], capsys)
    assert code == 0 and "| good ↑ |" in out
    assert str(broken) in err and "not readable JSON" in err


def test_quoted_glob_and_same_files_on_both_sides(tmp_path, capsys):
    for sae in ("relu-s0", "relu-s1", "topk-s0", "topk-s1"):
        write(tmp_path, sae, {"good": 0.5 if sae.startswith("relu") else 0.7, "low": 1.0, "count": 1})
    code, out, _ = compare([f"{tmp_path}/*/local_relu-s*", f"{tmp_path}/*/local_topk-s*", "--format", "csv"], capsys)
    assert code == 0 and csv_rows(out)["good"]["verdict"] == "better"

    code, _, err = compare([str(tmp_path), str(tmp_path)], capsys)
    assert code == 2 and "same result files" in err


def test_position_invariance_declares_its_intervals():
    from tsae_evals.evals.position_invariance.result import PositionInvarianceMetrics
    from tsae_evals.results import category_metric_info

    info = {}
    for name, field in PositionInvarianceMetrics.model_fields.items():
        category = field.annotation
        if isinstance(category, type):
            info.update(category_metric_info(name, category))
    assert info["invariance.mean_invariance"].interval == (
        "invariance.mean_invariance_ci_low",
        "invariance.mean_invariance_ci_high",
    )
    assert info["invariance.invariance_excess"].interval == (
        "invariance.invariance_excess_ci_low",
        "invariance.invariance_excess_ci_high",
    )
    bounds = {key for found in info.values() if found.interval for key in found.interval}
    assert bounds <= info.keys()  # each bound is itself a recorded metric


def test_interval_naming_a_missing_field_is_an_error():
    from tsae_evals.results import MetricCategory, category_metric_info, metric

    class Scores(MetricCategory):
        good: float = metric(label="good", higher_is_better=True, interval=("good_lo", "good_high"))
        good_lo: float = metric(label="good_lo", higher_is_better=None)

    with pytest.raises(ValueError, match="Scores.good declares interval.*no field good_high"):
        category_metric_info("scores", Scores)


def test_records_without_interval_still_load(tmp_path):
    from tsae_evals.results import read_record

    path = write(tmp_path, "relu", {"good": 0.5})
    raw = json.loads(path.read_text())
    for declared in raw["metric_info"].values():
        declared.pop("interval", None)
    path.write_text(json.dumps(raw))
    assert read_record(path).metric_info["scores.good"].interval is None


def test_saebench_own_file_is_compared_with_provenance_unknown(tmp_path, capsys):
    write(tmp_path / "new", "relu", {"good": 0.6, "low": 1.0, "count": 3})
    theirs = EvalRecord(  # as SAE-Bench writes it: no provenance, no declarations (it borrows ours)
        eval_type_id="toy",
        eval_config={"dataset_name": "corpus.txt"},
        eval_id="theirs",
        datetime_epoch_millis=1_700_000_000_000,
        eval_result_metrics={"scores": {"good": 0.5, "low": 1.0, "count": 3}},
        sae_lens_id="relu",
        sae_lens_release_id="local",
        sae_cfg_dict={"model_name": "tiny-test-model", "hook_name": "blocks.0.hook_resid_post"},
    )
    path = result_path(tmp_path / "base", "toy", "local", "relu")
    raw = theirs.model_dump(mode="json", exclude={"provenance", "metric_info", "schema_version"})
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(raw))

    code, out, _ = compare([str(tmp_path / "base"), str(tmp_path / "new")], capsys)
    assert code == 0
    assert "provenance unknown" in out and "| good ↑ | 0.5 | 0.6 | +0.1 |" in out
