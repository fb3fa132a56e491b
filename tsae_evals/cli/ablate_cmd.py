"""`ablate-window`: sweep the window of a windowed architecture, then one table (train + evaluate each)."""

from __future__ import annotations

import argparse

from tsae_evals.cli.train_cmd import add_training_arguments, training_request

EPILOG = """examples:
  python -m tsae_evals ablate-window --arch tsae_temporal_context --windows 1,2,4,8 --layer 6 --tokens 60000 \\
      --out saes/sweep --evals core,temporal
  python -m tsae_evals ablate-window --arch tsae_temporal_lstm --windows 4,16 --layer 6 --tokens 60000 \\
      --out saes/sweep --set init_from=saes/l6-relu --evals temporal
A one-variant sweep (see `sweep`): SAEs under OUT/saes are reused while their settings are unchanged; results go
to OUT/eval_results, the table to OUT/table.md and OUT/table.csv, each window compared with the first.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ablate-window",
        help="sweep a windowed architecture's window size",
        description="Train one SAE per window size, evaluate them together, print one row per window.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_arguments(
        parser, arch_help="a windowed architecture (see list --archs)", out_help="directory the SAEs are written under"
    )
    parser.add_argument("--windows", required=True, help="comma-separated window sizes")
    parser.add_argument("--evals", default="temporal", help="evals to run (default: the temporal group)")
    parser.add_argument("--n-windows", type=int, default=64, help="evaluation windows (default 64)")
    parser.add_argument("--config", action="append", default=[], metavar="EVAL.FIELD=VALUE")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tsae_evals.ablation import WindowAblation, ablate_window
    from tsae_evals.errors import UsageError
    from tsae_evals.runner import RunRequest, exit_code

    try:
        windows = tuple(int(w) for w in args.windows.split(","))
    except ValueError:
        raise UsageError(f"--windows {args.windows!r} is not a list of integers", "e.g. --windows 1,2,4,8") from None
    train = training_request(args)
    request = WindowAblation(
        train=train,
        windows=windows,
        run=RunRequest(
            sae_specs=[],
            eval_names=args.evals,
            model=train.model,
            dataset=train.dataset,
            n_windows=args.n_windows,
            context_size=train.context_size,
            seed=train.seed,
            device=train.device,
            config_overrides=args.config,
        ),
    )
    result = ablate_window(request)
    print(result.table_markdown.read_text(encoding="utf-8"))
    return exit_code(result.outcomes)
