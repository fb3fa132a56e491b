"""`python -m tsae_evals {run,list,train,sweep,ablate-window,table,compare,check,tolerances}`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tsae_evals.cli import (
    ablate_cmd,
    check_cmd,
    compare_cmd,
    list_cmd,
    run_cmd,
    sweep_cmd,
    table_cmd,
    tolerances_cmd,
    train_cmd,
)
from tsae_evals.errors import UsageError
from tsae_evals.quiet import quiet_libraries

EPILOG = """examples:
  python -m tsae_evals train --arch relu --layer 6 --tokens 300000 --out saes/l6-relu
  python -m tsae_evals run --sae saes/l6-relu --evals core,temporal_stability
  python -m tsae_evals list
  python -m tsae_evals table eval_results --group-by arch
  python -m tsae_evals check --baseline baselines/my-sae --results eval_results
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tsae_evals",
        description="Evaluate sparse autoencoders on language-model activations (SAE-Bench evals + temporal evals).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{run,list,train,sweep,ablate-window,table,compare,check,tolerances}"
    )
    for module in (
        run_cmd,
        list_cmd,
        train_cmd,
        sweep_cmd,
        ablate_cmd,
        table_cmd,
        compare_cmd,
        check_cmd,
        tolerances_cmd,
    ):
        module.add_parser(commands)
    return parser


def _set_threads() -> None:
    # One intra-op thread per core we may use: oversubscribed threads made a forward pass 10x slower.
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(int(os.environ.get("TSAE_EVALS_THREADS", cores)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # so a written file can say what wrote it
    try:
        if getattr(args, "uses_torch", True):  # the report commands read JSON only: no torch import, no wait
            _set_threads()
        with quiet_libraries():
            return int(args.handler(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; results finished so far are saved", file=sys.stderr)
        return 130
