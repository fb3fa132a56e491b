"""`tolerances`: rerun evals over seeds and write the tolerance file `check` holds results to."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tsae_evals.cli.run_cmd import add_measurement_arguments, measurement_request
from tsae_evals.report.regression import DEFAULT_K, MIN_SEEDS

EPILOG = f"""examples:
  python -m tsae_evals tolerances --sae saes/l6-relu --evals core,temporal_stability --seeds 0,1,2,3,4 \\
      --out baselines/l6-relu/tolerances.json
  python -m tsae_evals tolerances --sae saes/l6-relu --evals temporal --seeds 0,1,2 --k 4 --out tol.json --device cuda
Each seed is a full run with that seed: another document order (so other token windows of the dataset) and other
shuffle nulls and baselines. A metric's tolerance is k × its SD over the seeds (k defaults to {DEFAULT_K:g}); SD 0
means it does not depend on the seed, and `check` then allows only float arithmetic noise (1e-9 + 1e-6·|value|).
Measure with the --evals, --config, --n-windows, --context-size and --dataset of the baseline: `check` refuses
tolerances measured on another eval version, config or data.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tolerances",
        help="measure per-metric noise over seeds for `check`",
        description="Rerun evals on one SAE once per seed and write k × SD per metric as a tolerance file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sae", required=True, metavar="PATH|RELEASE:ID", help="the one SAE to rerun")
    parser.add_argument(
        "--seeds", default="0,1,2,3,4", help=f"comma-separated run seeds, at least {MIN_SEEDS} (default 0,1,2,3,4)"
    )
    parser.add_argument(
        "--k", type=float, default=DEFAULT_K, help=f"tolerance in SDs over the seeds (default {DEFAULT_K:g})"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="tolerance file to write")
    add_measurement_arguments(parser)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each seed's records in DIR/seed-N (default: a temporary folder, removed; the per-seed values "
        "are in the tolerance file anyway)",
    )
    parser.set_defaults(handler=handle)


def parse_seeds(text: str) -> list[int]:
    from tsae_evals.errors import UsageError

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds {text!r} is not a list of integers", "e.g. --seeds 0,1,2,3,4") from None


def handle(args: argparse.Namespace) -> int:
    import tempfile

    from tsae_evals.regression_noise import measure_tolerances
    from tsae_evals.report.regression import check_measurement, write_tolerances

    seeds = parse_seeds(args.seeds)
    check_measurement(seeds, args.k)  # before any model loads
    request = measurement_request(args, [args.sae])
    if args.work_dir is not None:
        tolerances = measure_tolerances(request, seeds, args.k, args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="tsae-tolerances-") as scratch:
            tolerances = measure_tolerances(request, seeds, args.k, Path(scratch))
    write_tolerances(args.out, tolerances)

    n_metrics = sum(len(metrics) for metrics in tolerances.metrics.values())
    constant = sum(noise.sd == 0 for metrics in tolerances.metrics.values() for noise in metrics.values())
    print(f"wrote {args.out}: {n_metrics} metrics of {len(tolerances.evals)} eval(s), {tolerances.describe()}")
    print(f"{constant} metric(s) did not move with the seed (SD 0): for them only the float floor applies")
    for eval_name, metrics in tolerances.metrics.items():
        for noise in metrics.values():
            if noise.headline and noise.sd is not None:
                finite = [value for value in noise.values if value is not None and math.isfinite(value)]
                mean = math.fsum(finite) / len(finite)
                print(
                    f"  {eval_name}.{noise.label}: mean {mean:.6g}, SD {noise.sd:.3g}, tolerance ±{noise.tolerance:.3g}"
                )
    return 0
