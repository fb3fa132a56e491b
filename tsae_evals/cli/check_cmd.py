"""`check`: fail when a metric regresses beyond the noise measured for it (exit 1), refuse unlike numbers (exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tsae_evals.report.records import RecordSet

EPILOG = """examples:
  python -m tsae_evals check --baseline baselines/my-sae --results eval_results/ci
  python -m tsae_evals check --baseline tests/golden/baseline --results /tmp/golden --two-sided
  python -m tsae_evals check --baseline baselines/ --results eval_results --sae 'l6-*' --tolerances tol.json
Tolerances are k × SD over reseeded runs, written by `python -m tsae_evals tolerances`; a baseline folder holding
tolerances.json uses it. Records pair by (SAE, eval); one SAE on each side pair whatever their names.
exit codes: 0 no regression; 1 a metric regressed (or shifted, with --two-sided) beyond its tolerance, or a
baseline result is missing; 2 bad input, or results that are not comparable (other eval version, config or data).
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check",
        help="fail when metrics regress beyond their measured noise",
        description=(
            "Compare current results with a baseline, metric by metric, against tolerances measured over seeds; "
            "one line per checked metric, then a summary."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--baseline", type=Path, required=True, metavar="FILE_OR_DIR", help="baseline result records")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("eval_results"),
        metavar="DIR",
        help="current results (default eval_results)",
    )
    parser.add_argument(
        "--tolerances",
        type=Path,
        default=None,
        metavar="FILE",
        help="tolerance file from `tolerances` (default: BASELINE/tolerances.json when BASELINE is a folder)",
    )
    parser.add_argument(
        "--two-sided",
        action="store_true",
        help="fail a shift beyond tolerance in either direction, metrics without a direction included "
        "(for golden results, where any shift means the computation changed)",
    )
    parser.add_argument(
        "--sae",
        action="append",
        default=[],
        metavar="PATTERN",
        help="check only SAEs whose name matches (glob; repeatable); a side holding one SAE is kept as it is",
    )
    parser.set_defaults(handler=handle, uses_torch=False)


def tolerance_path(baseline: Path, given: Path | None) -> Path:
    """The tolerance file to use: the one given, or the baseline folder's own."""
    from tsae_evals.errors import UsageError
    from tsae_evals.report.regression import TOLERANCES_FILE

    if given is not None:
        if not given.is_file():
            raise UsageError(f"no tolerance file at {given}", _measure_hint(given))
        return given
    if baseline.is_dir() and (baseline / TOLERANCES_FILE).is_file():
        return baseline / TOLERANCES_FILE
    where = f"{baseline} holds no {TOLERANCES_FILE}" if baseline.is_dir() else f"{baseline} is a file"
    raise UsageError(
        f"no tolerance file: {where} and --tolerances was not given",
        _measure_hint(baseline / TOLERANCES_FILE if baseline.is_dir() else Path(TOLERANCES_FILE)),
    )


def _measure_hint(out: Path) -> str:
    return (
        "measure one from reseeded runs of the baseline's SAE, with the baseline's evals and data: "
        f"python -m tsae_evals tolerances --sae SAE_DIR --evals EVALS --seeds 0,1,2,3,4 --out {out}"
    )


def _only(found: RecordSet, patterns: list[str], side: str) -> RecordSet:
    from tsae_evals.report.records import select_saes

    if len({loaded.sae.name for loaded in found.records}) == 1:  # the reference for whichever SAE is picked
        return found
    return select_saes(found, patterns, side, "--sae")


def handle(args: argparse.Namespace) -> int:
    from tsae_evals.cli import comma_list
    from tsae_evals.report.records import load_records
    from tsae_evals.report.regression import check, read_tolerances

    patterns = [part for value in args.sae for part in comma_list(value)]
    tolerances = read_tolerances(tolerance_path(args.baseline, args.tolerances))
    baseline = _only(load_records([args.baseline]), patterns, "baseline")
    current = _only(load_records([args.results]), patterns, "current results")
    report = check(baseline, current, tolerances, two_sided=args.two_sided)
    print(f"Regression check: baseline {args.baseline} vs current {args.results}")
    print(report.to_text())
    return report.exit_code
