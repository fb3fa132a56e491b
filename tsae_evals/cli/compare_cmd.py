"""`compare`: two sets of result records side by side, per eval and metric, with significance where the data
allow it. It only reports (exit 0); `check` is the gate."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from tsae_evals.cli import comma_list
from tsae_evals.errors import UsageError

EPILOG = """examples:
  python -m tsae_evals compare old_results/ eval_results/
  python -m tsae_evals compare sweeps/all_architectures/eval_results sweeps/all_architectures/eval_results \\
      --base-sae 'control_relu-*' --new-sae 'temporal_consistency-*'
  python -m tsae_evals compare 'runs/a/*/local_relu_eval_results.json' 'runs/b/*/local_relu_eval_results.json' --all
BASE and NEW are each a result file, a folder (searched recursively) or a quoted glob. Records are grouped by eval
and SAE variant (the name without its -sN seed suffix: seeds are replicates); like-named variants are paired, or
the one variant of BASE with the one of NEW when each side holds one.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare two sets of results (Δ, verdict, significance)",
        description="Compare NEW's results against BASE's: per eval and metric the base and new values, Δ, the "
        "verdict of the metric's direction and, where seeds or the eval's intervals allow it, a p-value. Reads "
        "result records only; loads no model. Always exits 0 unless the input is unusable (2).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("base", metavar="BASE", help="result file, folder or quoted glob: the reference")
    parser.add_argument("new", metavar="NEW", help="result file, folder or quoted glob: compared against BASE")
    parser.add_argument(
        "--sae", action="append", metavar="PATTERN", help="keep SAEs whose name matches (glob), both sides"
    )
    parser.add_argument("--base-sae", action="append", metavar="PATTERN", help="keep these SAEs of BASE (glob)")
    parser.add_argument("--new-sae", action="append", metavar="PATTERN", help="keep these SAEs of NEW (glob)")
    parser.add_argument("--evals", help="comma-separated evals to compare (default: every eval both sides have)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--metrics", help="comma-separated metrics as eval.label (default: the headline metrics)")
    which.add_argument("--all", action="store_true", dest="all_metrics", help="every declared metric")
    parser.add_argument(
        "--allow-mixed", action="store_true", help="compare results of different models, hooks or datasets anyway"
    )
    parser.add_argument("--format", choices=["md", "csv"], default="md", help="Markdown tables or CSV (stdout)")
    parser.set_defaults(handler=handle, uses_torch=False)


def _paths(spec: str, side: str) -> list[Path]:
    """The path as given, or what a (quoted) glob matches: a shell expands an unquoted one into extra arguments."""
    path = Path(spec)
    if path.exists() or not glob.has_magic(spec):
        return [path]
    matched = sorted(Path(found) for found in glob.glob(spec, recursive=True))
    if not matched:
        raise UsageError(f"{side} {spec!r} matches no file or folder", "check the pattern (quote it for the shell)")
    return matched


def handle(args: argparse.Namespace) -> int:
    from tsae_evals.report.compare import build_comparison, to_csv, to_markdown
    from tsae_evals.report.records import describe_skipped, load_records, select_saes

    sides = []
    skipped: list[str] = []
    for side, spec, own, option in (
        ("BASE", args.base, args.base_sae, "--base-sae"),
        ("NEW", args.new, args.new_sae, "--new-sae"),
    ):
        found = load_records(_paths(spec, side))
        skipped += [line for line in found.skipped if line not in skipped]
        found = select_saes(found, args.sae, side, "--sae")
        sides.append(select_saes(found, own, side, option))
    if skipped:  # before anything can refuse: a skipped file may be the reason why
        print(describe_skipped(skipped), file=sys.stderr)
    comparison = build_comparison(
        sides[0],
        sides[1],
        evals=comma_list(args.evals),
        metrics=comma_list(args.metrics),
        all_metrics=args.all_metrics,
        allow_mixed=args.allow_mixed,
    )
    if args.format == "csv":
        print(to_csv(comparison), end="")
    else:
        print(to_markdown(comparison, {"BASE": args.base, "NEW": args.new}), end="")
    return 0
