"""The leaderboard table: columns from declarations, filters, sorting by declared direction, grouping, bad input."""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_result
from tsae_evals.cli.main import main
from tsae_evals.report.leaderboard import build_leaderboard, l0_band, to_csv, to_markdown
from tsae_evals.report.records import load_records

FIXTURES = Path(__file__).parent.parent / "fixtures" / "records"
CORE = {
    "sparsity.l0": ("l0", None, True),
    "reconstruction_quality.explained_variance": ("expl_var", True, True),
    "model_performance_preservation.ce_loss_score": ("ce_rec", True, True),
    "reconstruction_quality.mse": ("mse", False, False),
}
STABILITY = {
    "jaccard.adjacent_jaccard_excess": ("jaccard_excess", True, True),
    "smoothness.lipschitz": ("smoothness", False, True),
    "smoothness.lipschitz_shuffled": ("smoothness_null", None, True),
}
# name: (architecture, l0, explained variance, ce_rec, jaccard_excess, smoothness)
SAES = {
    "relu-a": ("relu", 15.0, 0.90, 0.80, 0.02, 0.30),
    "relu-b": ("relu", 60.0, 0.95, 0.92, 0.01, 0.50),
    "temporal-a": ("tsae_temporal", 25.0, 0.88, 0.85, 0.06, 0.10),
    "topk-a": ("topk", 30.0, 0.93, 0.90, 0.04, 0.20),
}


def _core(arch: str, l0: float, ev: float, ce: float) -> dict[str, dict[str, float]]:
    return {
        "sparsity": {"l0": l0},
        "reconstruction_quality": {"explained_variance": ev, "mse": 1 - ev},
        "model_performance_preservation": {"ce_loss_score": ce},
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    for name, (arch, l0, ev, ce, jaccard, smooth) in SAES.items():
        write_result(tmp_path, "core", name, _core(arch, l0, ev, ce), CORE, architecture=arch, l0=l0)
        metrics = {"jaccard": {"adjacent_jaccard_excess": jaccard}, "smoothness": {"lipschitz": smooth,
                   "lipschitz_shuffled": 0.4}}  # fmt: skip
        write_result(tmp_path, "temporal_stability", name, metrics, STABILITY, architecture=arch, l0=l0)
    return tmp_path


def _order(board) -> list[str]:  # type: ignore[no-untyped-def]
    return [row.label for row in board.rows]


def test_columns_are_the_declared_headlines_with_l0_and_ev_beside_every_row(results: Path) -> None:
    board = build_leaderboard(load_records([results]))
    names = [column.name for column in board.columns]
    assert names == [
        "core.ce_rec",
        "temporal_stability.jaccard_excess",
        "temporal_stability.smoothness",
        "temporal_stability.smoothness_null",
    ]  # mse is not a headline; l0 and expl_var are the row's own columns
    row = next(row for row in board.rows if row.label == "topk-a")
    assert (row.l0, row.explained_variance, row.reference, row.architecture) == (30.0, 0.93, "core", "topk")
    assert row.values["temporal_stability.smoothness"] == 0.20


def test_sort_follows_the_declared_direction(results: Path) -> None:
    found = load_records([results])
    higher = build_leaderboard(found, sort="temporal_stability.jaccard_excess")
    assert _order(higher) == sorted(SAES, key=lambda name: -SAES[name][4])
    lower = build_leaderboard(found, sort="smoothness")
    assert _order(lower) == sorted(SAES, key=lambda name: SAES[name][5])


def test_filters_and_groups(results: Path) -> None:
    found = load_records([results])
    assert _order(build_leaderboard(found, sae_patterns=["relu-*"])) == ["relu-a", "relu-b"]
    assert _order(build_leaderboard(found, architectures=["topk", "tsae_temporal"])) == ["temporal-a", "topk-a"]
    assert _order(build_leaderboard(found, l0_range=(20, 40))) == ["temporal-a", "topk-a"]
    by_arch = build_leaderboard(found, group_by="arch", sort="core.ce_rec")
    assert [(row.group, row.label) for row in by_arch.rows] == [
        ("relu", "relu-b"), ("relu", "relu-a"), ("topk", "topk-a"), ("tsae_temporal", "temporal-a")
    ]  # fmt: skip
    by_band = build_leaderboard(found, group_by="l0_band")
    assert [row.group for row in by_band.rows] == ["L0 0-20", "L0 20-40", "L0 20-40", "L0 40-80"]
    assert "## L0 20-40" in to_markdown(by_band)


def test_l0_bands() -> None:
    assert [l0_band(value) for value in (0.5, 20, 79.9, 500, None)] == [
        "L0 0-20", "L0 20-40", "L0 40-80", "L0 ≥320", "L0 unknown"
    ]  # fmt: skip


def test_markdown_and_csv_carry_directions_and_full_precision(results: Path) -> None:
    board = build_leaderboard(load_records([results]), evals=["temporal_stability"])
    markdown = to_markdown(board)
    assert "temporal_stability.smoothness ↓" in markdown and "temporal_stability.jaccard_excess ↑" in markdown
    assert "core.ce_rec" not in markdown
    rows = list(csv.reader(to_csv(board).splitlines()))
    header, directions = rows[0], rows[1]
    assert directions[header.index("temporal_stability.smoothness")] == "lower"
    by_name = {row[0]: row for row in rows[2:]}
    assert float(by_name["relu-b"][header.index("l0")]) == 60.0


def test_an_sae_without_core_takes_l0_from_its_preflight_marked(tmp_path: Path) -> None:
    metrics = {
        "jaccard": {"adjacent_jaccard_excess": 0.03},
        "smoothness": {"lipschitz": 0.2, "lipschitz_shuffled": 0.4},
    }
    write_result(tmp_path, "temporal_stability", "lonely", metrics, STABILITY, l0=42.0, explained_variance=0.7)
    board = build_leaderboard(load_records([tmp_path]))
    assert (board.rows[0].l0, board.rows[0].reference) == (42.0, "preflight")
    assert "| 42* | 0.7* |" in to_markdown(board)


def test_malformed_and_partial_files_are_named_and_skipped(results: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    broken = results / "core" / "local_broken_eval_results.json"
    broken.write_text('{"eval_type_id": "core", "eval_res')
    partial = results / "core" / "local_partial_eval_results.json"
    partial.write_text(json.dumps({"eval_type_id": "core", "eval_result_metrics": {}}))
    assert main(["table", str(results)]) == 0
    out, err = capsys.readouterr()
    assert str(broken) in err and str(partial) in err
    assert "| relu-a |" in out and "| broken |" not in out and "Skipped 2 file(s)" in out


def test_results_of_different_models_are_refused_unless_asked(results: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    write_result(results, "core", "other-model", _core("relu", 10, 0.9, 0.9), CORE, model="gemma-2-2b")
    assert main(["table", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gemma-2-2b" in err and "--allow-mixed" in err
    assert main(["table", str(results), "--allow-mixed"]) == 0


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--sort", "nope"], "--sort"),
        (["--metrics", "core.nope"], "--metrics"),
        (["--evals", "absorption"], "--evals"),
        (["--l0", "abc"], "--l0"),
        (["--l0-bands", "40,20"], "--l0-bands"),
        (["--sae", "zzz*"], "filters"),
    ],
)
def test_bad_options_are_one_line_usage_errors(results: Path, capsys, argv: list[str], named: str) -> None:  # type: ignore[no-untyped-def]
    assert main(["table", str(results), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "Fix:" in err


def test_an_empty_folder_is_a_usage_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["table", str(tmp_path)]) == 2
    assert "no readable result records" in capsys.readouterr().err


def test_the_older_of_two_records_of_one_sae_and_eval_is_named(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    old = write_result(first, "core", "x", _core("relu", 10, 0.8, 0.8), CORE, written_ms=1)
    write_result(second, "core", "x", _core("relu", 10, 0.9, 0.9), CORE, written_ms=2)
    found = load_records([first, second])
    assert [loaded.record.eval_result_metrics["model_performance_preservation"] for loaded in found.records] == [
        {"ce_loss_score": 0.9}
    ]
    assert len(found.skipped) == 1 and str(old) in found.skipped[0]


def test_a_schema_1_file_still_loads_and_borrows_declarations(results: Path) -> None:
    """A record written at commit 05ba769 (no metric declarations) beside today's records of the same eval."""
    old = FIXTURES / "schema1"
    found = load_records([old])
    assert found.records[0].record.provenance is not None and not found.records[0].record.metric_info
    board = build_leaderboard(found, metrics=["feature_lifetimes.lifetimes.mean_lifetime"])
    assert board.rows[0].values["feature_lifetimes.lifetimes.mean_lifetime"] == pytest.approx(1.054642734894758)
    lifetimes = {"lifetimes.mean_lifetime": ("lifetime", True, True)}
    write_result(results, "feature_lifetimes", "new", {"lifetimes": {"mean_lifetime": 2.0}}, lifetimes,
                 model="smollm2-135m-instruct")  # fmt: skip
    mixed = build_leaderboard(load_records([old, results]), evals=["feature_lifetimes"], allow_mixed=True)
    values = {row.label: row.values["feature_lifetimes.lifetime"] for row in mixed.rows}
    assert values == {"smollm2-l6-relu-demo": pytest.approx(1.054642734894758), "new": 2.0}


def test_table_imports_no_torch(results: Path) -> None:
    code = (
        "import sys; from tsae_evals.cli.main import main; "
        f"assert main(['table', {str(results)!r}, '--format', 'csv']) == 0; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_schema_2_file_loads_with_its_declarations() -> None:
    found = load_records([FIXTURES / "schema2"])
    assert found.records[0].record.schema_version == 3  # migrated on reading; the file is untouched
    board = build_leaderboard(found)
    assert board.rows[0].values["context_switch.auroc_w16"] == pytest.approx(0.7408, abs=1e-4)
    assert "context_switch.auroc_w16 ↑" in to_markdown(board)


REPO = Path(__file__).resolve().parents[2]


def test_the_committed_leaderboard_is_what_its_command_writes_from_the_committed_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval_results/LEADERBOARD.md names the command that wrote it; rerun from the committed records, it must give
    the same Markdown and CSV (so a changed result or reader without a regenerated leaderboard fails here)."""
    committed = (REPO / "eval_results" / "LEADERBOARD.md").read_text(encoding="utf-8")
    command = committed.split("Written by `", 1)[1].split("`", 1)[0]
    argv = shlex.split(command)[3:]  # after `python -m tsae_evals`
    out = argv.index("--out")
    assert argv[out + 1] == "eval_results", "the committed leaderboard is written into eval_results/"
    argv[out + 1] = str(tmp_path)
    monkeypatch.chdir(REPO)
    assert main(argv) == 0
    fresh = (tmp_path / "LEADERBOARD.md").read_text(encoding="utf-8").replace(str(tmp_path), "eval_results")
    assert fresh == committed, "regenerate it: " + command
    assert (tmp_path / "leaderboard.csv").read_text() == (REPO / "eval_results" / "leaderboard.csv").read_text()
    assert (REPO / "eval_results" / "leaderboard.html").stat().st_size > 0


def test_the_example_ci_workflow_runs_only_commands_that_parse() -> None:
    """examples/sae-regression-check.yml: valid YAML whose tsae_evals commands our CLI accepts as written."""
    import yaml

    from tsae_evals.cli.main import build_parser

    workflow = yaml.safe_load((REPO / "examples" / "sae-regression-check.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    commands = [
        line.split("-m tsae_evals", 1)[1].split("|", 1)[0]
        for step in steps
        for line in step.get("run", "").splitlines()
        if "-m tsae_evals" in line
    ]
    assert {shlex.split(command)[0] for command in commands} >= {"train", "run", "compare", "check", "table"}
    parser = build_parser()
    for command in commands:
        parser.parse_args(shlex.split(command))  # SystemExit on an option the CLI does not have
