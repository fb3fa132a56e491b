"""Many SAEs, one forward: the streaming evals on 1, 4 and 8 SAEs at one hook, as ratios to one SAE, one run.

`run` feeds every SAE evaluated on the same model from one model forward per batch, so adding SAEs adds only
their encodes and their metrics. Goal: 8 SAEs cost at most 2x one SAE (on a GPU with a 2B model the forward is
nearly all of the cost; on SmolLM2 on a CPU the per-SAE share is larger). For contrast, the same SAEs run one
at a time (as every run did before the shared pass).

Timings are of `run()` itself with the model already loaded (preflight, SAE loading and result writing
included), interleaved and best of `--repeats`: single timings on a shared 2-core machine vary by 15%.

    .venv/bin/python benchmarks/many_saes.py [--windows 32] [--counts 1,4,8] [--device cpu] [--model DIR] [--dataset]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

HOOK = "blocks.6.hook_resid_post"
EVALS = "temporal_stability,feature_lifetimes"


def _random_saes(root: Path, count: int, model_name: str, d_in: int) -> list[Path]:
    """Random TopK SAEs of the demo's width: speed does not depend on training."""
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    paths = []
    for index in range(count):
        torch.manual_seed(index)
        metadata = SAEMetadata(hook_name=HOOK, model_name=model_name, context_size=128, prepend_bos=True)
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=4 * d_in, k=64, metadata=metadata))
        path = root / f"random-{index}"
        sae.save_model(str(path))
        paths.append(path)
    return paths


def _timed_run(saes: list[Path], model: Any, args: argparse.Namespace, results: Path) -> float:
    from tsae_evals.runner import RunRequest, run

    request = RunRequest(
        sae_specs=[str(p) for p in saes],
        eval_names=EVALS,
        model=args.model,
        dataset=args.dataset,
        n_windows=args.windows,
        batch_size=args.batch_size,
        device=args.device,
        results_dir=results,
        allow_degenerate=True,
        force=True,
    )
    started = time.perf_counter()
    outcomes = run(request, model_loader=lambda name, device: model)
    elapsed = time.perf_counter() - started
    failed = [f"{o.eval_name} on {o.sae_label}: {o.message}" for o in outcomes if o.status != "ok"]
    if failed:
        raise SystemExit("benchmark run failed: " + "; ".join(failed))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=32, help="windows of 128 tokens per run (default 32)")
    parser.add_argument("--counts", default="1,4,8", help="numbers of SAEs (default 1,4,8)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats, best kept (default 2)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per forward (default: by device)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model name or HF directory")
    parser.add_argument("--dataset", default="sae-probes", help="text source (default: the offline sae-probes text)")
    args = parser.parse_args()

    import torch

    from tsae_evals.models import load_model
    from tsae_evals.quiet import quiet_libraries

    if args.device == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    counts = [int(part) for part in args.counts.split(",")]
    with quiet_libraries(), tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model = load_model(args.model, args.device)
        saes = _random_saes(root, max(counts), args.model, int(model.cfg.d_model))
        _timed_run(saes[:1], model, args, root / "warm-up")
        shared: dict[int, float] = {}
        one_at_a_time: dict[int, float] = {}
        for repeat in range(args.repeats):
            for count in counts:
                took = _timed_run(saes[:count], model, args, root / f"shared-{count}-{repeat}")
                shared[count] = min(shared.get(count, took), took)
            separate = sum(_timed_run([sae], model, args, root / f"alone-{repeat}-{sae.name}") for sae in saes)
            one_at_a_time[len(saes)] = min(one_at_a_time.get(len(saes), separate), separate)
    base = shared[counts[0]] / counts[0]
    print(f"device {args.device}, {args.windows} windows x 128 tokens, evals {EVALS}, best of {args.repeats}")
    for count in counts:
        print(
            f"{count} SAE(s), one shared forward: {shared[count]:6.2f} s   ratio to one SAE: {shared[count] / base:.2f}"
        )
    n = len(saes)
    print(
        f"{n} SAEs one at a time:            {one_at_a_time[n]:6.2f} s   ratio to one SAE: {one_at_a_time[n] / base:.2f}"
    )


if __name__ == "__main__":
    main()
