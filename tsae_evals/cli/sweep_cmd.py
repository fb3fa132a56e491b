"""`sweep`: train a recipe's variants (cached by their settings), evaluate them together, write one table."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  python -m tsae_evals sweep recipes/all_architectures.yaml
  python -m tsae_evals sweep recipes/temporal_consistency.yaml --out sweeps/tc --device cuda
  python -m tsae_evals sweep recipes/all_architectures.yaml --only t_sae     # one variant and its control
  python -m tsae_evals sweep recipes/all_architectures.yaml --executor ray --ray-address HEAD:6379 --device cuda
Rerunning a sweep reuses every SAE whose settings are unchanged and every result already computed.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sweep",
        help="train and compare a recipe's variants against a control",
        description=(
            "Train every variant of a YAML recipe once per seed on one shared activation cache, evaluate them in "
            "one run, and write table.md, table.csv and effects.png (effects against the control, SD over seeds)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recipe", type=Path, help="YAML recipe (see recipes/)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default sweeps/<recipe name>)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="", help="comma-separated variants to run (their controls come along)")
    parser.add_argument(
        "--tokens", type=int, default=None, help="train every variant on this many tokens instead of the recipe's"
    )
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (default), or ray: one task per SAE to train and per (variant, eval) on a Ray cluster; "
        "--out must then be on storage every node sees",
    )
    parser.add_argument("--ray-address", default=None, help="Ray cluster to join (default $RAY_ADDRESS or local)")
    parser.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs each Ray task reserves (default 1)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tsae_evals.errors import UsageError
    from tsae_evals.runner import exit_code
    from tsae_evals.sweep import SweepRequest, run_sweep

    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    if args.tokens is not None and args.tokens < 1:
        raise UsageError(f"--tokens {args.tokens} is not a token budget", "pass a positive number of tokens")
    if args.cpus_per_task <= 0:
        raise UsageError(f"--cpus-per-task {args.cpus_per_task} reserves nothing", "pass a positive number")
    request = SweepRequest(
        recipe_path=args.recipe,
        out=args.out,
        device=args.device,
        only=only,
        tokens=args.tokens,
        executor=args.executor,
        ray_address=args.ray_address,
        cpus_per_task=args.cpus_per_task,
    )
    result = run_sweep(request)
    print(result.table_markdown.read_text(encoding="utf-8"))
    print(f"wrote {result.table_markdown}, {result.table_csv}" + (f", {result.plot}" if result.plot else ""))
    return exit_code(result.outcomes)
