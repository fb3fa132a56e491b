"""`table`: the leaderboard of result records (Markdown, CSV or a self-contained HTML page with plots)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tsae_evals.cli import comma_list
from tsae_evals.errors import UsageError

OUT_FILES = ("LEADERBOARD.md", "leaderboard.csv", "leaderboard.html")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "table",
        help="leaderboard of result records (Markdown, CSV, HTML)",
        description="One row per SAE, a column per headline metric of each eval, L0 and explained variance beside "
        "every row. Reads result records only; loads no model.",
        epilog="example: python -m tsae_evals table eval_results sweeps/all_architectures/eval_results "
        "--group-by arch --out eval_results",
    )
    parser.add_argument("dirs", nargs="*", type=Path, default=[Path("eval_results")], help="result folders or files")
    parser.add_argument("--evals", help="comma-separated evals whose headline metrics become columns (default: all)")
    parser.add_argument("--metrics", help="comma-separated columns as eval.label, instead of the headline metrics")
    parser.add_argument("--list-metrics", action="store_true", help="print every declared metric and exit")
    parser.add_argument("--sae", action="append", metavar="PATTERN", help="keep SAEs whose name matches (glob)")
    parser.add_argument("--arch", help="comma-separated architectures to keep")
    parser.add_argument("--l0", metavar="MIN:MAX", help="keep SAEs with L0 in this range (either side may be empty)")
    parser.add_argument("--sort", metavar="COLUMN", help="sort best first by this column (eval.label, l0, expl_var)")
    parser.add_argument("--group-by", choices=["arch", "l0_band"], help="one table per architecture or L0 band")
    parser.add_argument("--l0-bands", default="20,40,80,160,320", help="edges of the L0 bands (default %(default)s)")
    parser.add_argument("--format", choices=["md", "csv", "html"], default="md", help="what to print")
    parser.add_argument("--out", type=Path, help=f"write {', '.join(OUT_FILES)} and the plots into this folder")
    parser.add_argument("--title", default="Leaderboard", help="title of the Markdown and HTML page")
    parser.add_argument(
        "--allow-mixed", action="store_true", help="put results of different models, hooks or datasets in one table"
    )
    parser.set_defaults(handler=handle, uses_torch=False)


def _l0_range(value: str | None) -> tuple[float | None, float | None]:
    if not value:
        return None, None
    low, sep, high = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return (float(low) if low else None, float(high) if high else None)
    except ValueError:
        raise UsageError(f"--l0 {value!r} is not a range", "write MIN:MAX, e.g. --l0 20:200 or --l0 :100") from None


def _bands(value: str) -> list[float]:
    try:
        edges = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        edges = []
    if not edges or edges != sorted(edges):
        raise UsageError(f"--l0-bands {value!r} is not a rising list of numbers", "write e.g. --l0-bands 20,40,80,160")
    return edges


def handle(args: argparse.Namespace) -> int:
    from tsae_evals.report.leaderboard import available_columns, build_leaderboard, to_csv, to_markdown
    from tsae_evals.report.records import describe_skipped, load_records

    found = load_records(args.dirs)
    if found.skipped:
        print(describe_skipped(found.skipped), file=sys.stderr)
    if args.list_metrics:
        for name, column in available_columns(found).items():
            print(
                f"{name:<48} {column.arrow or '·'}  {column.description.splitlines()[0] if column.description else ''}"
            )
        return 0
    board = build_leaderboard(
        found,
        evals=comma_list(args.evals),
        metrics=comma_list(args.metrics),
        sae_patterns=args.sae,
        architectures=comma_list(args.arch),
        l0_range=_l0_range(args.l0),
        sort=args.sort,
        group_by=args.group_by,
        l0_bands=_bands(args.l0_bands),
        allow_mixed=args.allow_mixed,
    )
    command = "python -m tsae_evals " + shlex.join(args.argv) if args.out else None
    if args.out is not None:
        from tsae_evals.report.figures import write_figures
        from tsae_evals.report.html import to_html

        args.out.mkdir(parents=True, exist_ok=True)
        figures = write_figures(board, args.out)
        markdown = to_markdown(board, args.title, command)
        if figures:
            markdown += "\n" + "\n".join(f"![{path.stem}]({path.name})" for path in figures) + "\n"
        (args.out / OUT_FILES[0]).write_text(markdown, encoding="utf-8")
        (args.out / OUT_FILES[1]).write_text(to_csv(board), encoding="utf-8")
        (args.out / OUT_FILES[2]).write_text(to_html(board, figures, args.title, command), encoding="utf-8")
        for path in [*(args.out / name for name in OUT_FILES), *figures]:
            print(f"wrote {path}")
        return 0
    if args.format == "csv":
        print(to_csv(board), end="")
    elif args.format == "html":
        from tsae_evals.report.html import to_html

        print(to_html(board, [], args.title))
    else:
        print(to_markdown(board, args.title), end="")
    return 0
