"""`run`: evaluate SAEs with registered evals and print a summary table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsae_evals.data.documents import DEFAULT_DATASET
from tsae_evals.runner import CPU_BATCH_SIZE, GPU_BATCH_SIZE

if TYPE_CHECKING:
    from tsae_evals.runner import RunRequest

EPILOG = """examples:
  python -m tsae_evals run --sae saes/l6-relu --evals core,temporal_stability
  python -m tsae_evals run --sae a,b --evals temporal --config temporal_stability.max_lag=5
  python -m tsae_evals run --sae gpt2-small-res-jb:blocks.8.hook_resid_pre --model gpt2 --evals core   (hub access)
Results that exist with the same eval version, config, SAE weights and data are reused (--force recomputes).
exit codes: 0 all evals ran; 1 an eval failed or an SAE failed preflight; 2 bad input (nothing was run).
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run",
        help="evaluate SAEs",
        description="Evaluate SAEs; one SAE-Bench-format JSON per (SAE, eval) under --results-dir/<eval>/.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sae",
        action="append",
        required=True,
        metavar="PATH|RELEASE:ID",
        help="sae-lens directory or release:sae_id; repeatable or comma-separated",
    )
    add_measurement_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed for document order and shuffles (default 0)")
    parser.add_argument("--results-dir", type=Path, default=Path("eval_results"), help="default eval_results")
    parser.add_argument(
        "--artifacts-dir",
        type=Path,
        default=None,
        help="where evals cache activations and probes they reuse across SAEs and runs "
        "(default: artifacts/ in $TSAE_EVALS_CACHE or ~/.cache/tsae_evals)",
    )
    parser.add_argument(
        "--allow-degenerate",
        action="store_true",
        help="evaluate SAEs that fail preflight anyway (their JSON still says they failed)",
    )
    parser.add_argument("--plots", action="store_true", help="also draw each eval's pictures (PNG beside its JSON)")
    parser.add_argument(
        "--force", action="store_true", help="recompute results that already exist for the same SAE, eval and data"
    )
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failed evals")
    parser.set_defaults(handler=handle)


def add_measurement_arguments(parser: argparse.ArgumentParser) -> None:
    """What decides the numbers besides the SAE and the seed: evals, model, data, windows, device and config
    overrides. Shared by `run` and `tolerances`, so a tolerance is measured exactly as the run it stands for."""
    parser.add_argument("--evals", required=True, help="comma-separated eval names or groups (see `list`)")
    parser.add_argument(
        "--model",
        default=None,
        help="model to run: smollm2-135m-instruct (offline), a local HF directory or a TransformerLens "
        "name (default: the model recorded in the SAE's config)",
    )
    parser.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help=f"text source: {DEFAULT_DATASET} (offline), a .txt/.jsonl/.parquet path or an HF dataset",
    )
    parser.add_argument("--n-windows", type=int, default=64, help="token windows to cut (default 64)")
    parser.add_argument("--context-size", type=int, default=128, help="tokens per window, BOS included (default 128)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"windows per model forward (default {CPU_BATCH_SIZE} on a CPU, {GPU_BATCH_SIZE} on a GPU)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="EVAL.FIELD=VALUE",
        help="override an eval config field; repeatable",
    )


def measurement_request(args: argparse.Namespace, sae_specs: list[str], **fields: Any) -> RunRequest:
    """The RunRequest those arguments describe, with `fields` (seed, results_dir, ...) on top."""
    from tsae_evals.runner import RunRequest

    return RunRequest(
        sae_specs=sae_specs,
        eval_names=args.evals,
        model=args.model,
        dataset=args.dataset,
        n_windows=args.n_windows,
        context_size=args.context_size,
        batch_size=args.batch_size,
        device=args.device,
        config_overrides=args.config,
        **fields,
    )


def handle(args: argparse.Namespace) -> int:
    from tsae_evals.runner import exit_code, run
    from tsae_evals.summary import format_summary

    request = measurement_request(
        args,
        args.sae,
        seed=args.seed,
        results_dir=args.results_dir,
        artifacts_dir=args.artifacts_dir,
        allow_degenerate=args.allow_degenerate,
        plots=args.plots,
        force=args.force,
        verbose=args.verbose,
    )
    outcomes = run(request)
    print(format_summary(outcomes))
    return exit_code(outcomes)
