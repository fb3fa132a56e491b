"""Speed and memory of the temporal evals against their floor, as ratios measured in one run, on any device.

Floor: one model forward to the hook layer plus one SAE encode over the same windows. The streaming temporal
evals (temporal_stability, feature_lifetimes) share one such pass; each is also timed alone over its own pass,
so its cost shows as tokens/s beside the floor's. context_switch runs the model on its own spliced tokens
(n_windows / 2 sequences), so it is reported against its own floor and in the total. causal_interventions is
left out: counterfactual full-model runs are its measurement, not overhead.
Memory: peak above the post-load baseline while the streaming evals run, at N and 4N windows (each in a fresh
process); the ratio should stay near 1. On the CPU it is resident memory sampled every 5 ms, on a GPU the
allocator's peak (torch.cuda.max_memory_allocated).
Several SAEs sharing one forward (1, 4 and 8 SAEs at one hook, as ratios to one SAE): benchmarks/many_saes.py;
its ratios join this report under "many_saes" once that benchmark settles.

    .venv/bin/python benchmarks/temporal_evals.py [--windows 64] [--sae DIR] [--device cuda] [--batch-size 128]
        [--model NAME_OR_HF_DIR] [--dataset PATH] [--streaming-only] [--profile]

--streaming-only skips context_switch and the memory runs; --profile adds where the streaming pass spends its
time: per stage (forward + encode, each scorer's add, each finish; synchronised around each) and the top operators
of one pass under torch.profiler.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEMO_SAE = (
    Path(os.environ.get("TSAE_EVALS_CACHE", Path.home() / ".cache" / "tsae_evals")) / "saes" / "smollm2-l6-relu-demo"
)
STREAMING = ("temporal_stability", "feature_lifetimes")
CONTEXT_SIZE = 128


def _setup(args: argparse.Namespace, n_windows: int) -> Any:
    import torch
    from sae_lens import SAE

    import custom_saes  # noqa: F401
    from tsae_evals.context import EvalContext
    from tsae_evals.data import load_documents, make_windows
    from tsae_evals.models import load_model
    from tsae_evals.saes import SAERef

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model = load_model(args.model, args.device)
    if args.sae:
        sae = SAE.load_from_disk(args.sae, device=args.device).eval()
    else:  # a random TopK SAE of the demo's width: speed does not depend on training
        from sae_lens import TopKSAE, TopKSAEConfig

        d_model = model.cfg.d_model
        sae = TopKSAE(TopKSAEConfig(d_in=d_model, d_sae=4 * d_model, k=64, device=args.device)).eval()
    hook = sae.cfg.metadata.hook_name or "blocks.6.hook_resid_post"
    documents = load_documents(args.dataset, seed=0)
    windows = make_windows(model.tokenizer, documents, context_size=CONTEXT_SIZE, n_windows=n_windows)
    ref = SAERef(spec=args.sae or "random", path=Path(args.sae) if args.sae else None, release="local", sae_id="bench")
    return EvalContext(model, sae, ref, hook, windows, seed=0, device=args.device, batch_size=args.batch_size)


def _synchronize(ctx: Any) -> None:
    import torch

    if str(ctx.device).startswith("cuda"):
        torch.cuda.synchronize()


def _timed(ctx: Any, work: Any) -> float:
    _synchronize(ctx)
    started = time.perf_counter()
    work()
    _synchronize(ctx)
    return time.perf_counter() - started


def _floor(ctx: Any) -> None:
    import torch

    for _, activations in ctx.iter_activation_batches():
        with torch.no_grad():
            ctx.sae.encode(activations)


def _scorers(ctx: Any, names: tuple[str, ...]) -> dict[str, Any]:
    from tsae_evals.registry import get_eval

    found = {}
    for name in names:
        spec = get_eval(name)
        assert spec.scorer is not None, name
        found[name] = spec.scorer(ctx, spec.config_cls())
    return found


def _streaming_pass(ctx: Any, names: tuple[str, ...]) -> None:
    """What the runner's shared pass does for one SAE: one forward and encode per batch, every scorer fed."""
    from tsae_evals.context import EncodedBatch

    scorers = _scorers(ctx, names)
    fed = dict.fromkeys(scorers, 0)
    for _, activations in ctx.iter_activation_batches():
        batch = EncodedBatch.encode(ctx.sae, activations)
        for name, scorer in scorers.items():
            wanted = min(scorer.n_windows or ctx.windows.n_windows, ctx.windows.n_windows)
            if fed[name] < wanted:
                part = batch if fed[name] + batch.latents.shape[0] <= wanted else batch.limited(wanted - fed[name])
                scorer.add(part)
                fed[name] += part.latents.shape[0]
    for scorer in scorers.values():
        scorer.finish()


def speed(args: argparse.Namespace) -> dict[str, Any]:
    from tsae_evals.registry import get_eval

    ctx = _setup(args, args.windows)
    tokens = ctx.windows.n_windows * ctx.windows.context_size
    _floor(ctx)  # warm-up: first-call allocations and kernel selection
    _streaming_pass(ctx, STREAMING)
    # Interleaved repeats, best of each: on a shared 2-core machine single timings vary by 15%.
    runs: dict[str, list[float]] = {"floor": [], "streaming": [], **{name: [] for name in STREAMING}}
    for _ in range(args.repeats):
        runs["floor"].append(_timed(ctx, lambda: _floor(ctx)))
        runs["streaming"].append(_timed(ctx, lambda: _streaming_pass(ctx, STREAMING)))
        for name in STREAMING:
            runs[name].append(_timed(ctx, lambda name=name: _streaming_pass(ctx, (name,))))
    best = {key: min(values) for key, values in runs.items()}
    floor, streaming = best["floor"], best["streaming"]
    report = {
        "device": str(ctx.device),
        "windows": args.windows,
        "batch_size": ctx.batch_size,
        "tokens": tokens,
        "floor_s": round(floor, 3),
        "streaming_evals_s": round(streaming, 3),
        "tokens_per_s": {
            "floor": round(tokens / floor),
            "streaming_evals": round(tokens / streaming),
            **{name: round(tokens / best[name]) for name in STREAMING},
        },
        "over_floor": {name: round(best[name] / floor, 3) for name in STREAMING},
        "streaming_over_floor": round(streaming / floor, 3),
    }
    if args.profile:
        report["stages_ms"] = _stages(ctx)
        _profile(ctx)
    if args.streaming_only:
        return report
    spec = get_eval("context_switch")
    context_switch = _timed(ctx, lambda: spec.fn(ctx, spec.config_cls()))
    context_switch_floor = _splice_floor(ctx, spec.config_cls())
    report["context_switch_s"] = round(context_switch, 3)
    report["all_temporal_over_floor"] = round((streaming + context_switch) / floor, 3)
    report["context_switch_over_its_floor"] = round(context_switch / context_switch_floor, 3)
    return report


def _stages(ctx: Any) -> dict[str, float]:
    """Milliseconds per stage of one streaming pass, synchronised around each (so host syncs inside a stage are
    charged to it, and nothing overlaps): where the time over the floor goes."""
    from tsae_evals.context import EncodedBatch

    scorers = _scorers(ctx, STREAMING)
    spent: dict[str, float] = {"forward_encode_decode": 0.0, **{f"{name}.add": 0.0 for name in scorers}}
    batches: list[Any] = []

    def forward() -> None:
        batches.append(EncodedBatch.encode(ctx.sae, next(iterator)[1]))

    iterator = iter(ctx.iter_activation_batches())
    for _ in range(-(-ctx.windows.n_windows // ctx.batch_size)):
        spent["forward_encode_decode"] += _timed(ctx, forward)
        batch = batches.pop()
        for name, scorer in scorers.items():
            spent[f"{name}.add"] += _timed(ctx, lambda scorer=scorer, batch=batch: scorer.add(batch))
    for name, scorer in scorers.items():
        spent[f"{name}.finish"] = _timed(ctx, scorer.finish)
    return {key: round(1000 * value, 2) for key, value in spent.items()}


def _profile(ctx: Any) -> None:
    """The top operators of one streaming pass, by device time (or CPU time on the CPU)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = str(ctx.device).startswith("cuda")
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as trace:
        _streaming_pass(ctx, STREAMING)
        _synchronize(ctx)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(trace.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60), file=sys.stderr)


def _splice_floor(ctx: Any, cfg: Any) -> float:
    """Forward + encode on context_switch's own spliced tokens (it cannot share the run's tokens)."""
    import torch

    from tsae_evals.evals.context_switch.eval import splice_windows

    spliced, _, _ = splice_windows(ctx, cfg)

    def work() -> None:
        for batch in spliced.split(ctx.batch_size):
            with torch.no_grad():
                ctx.sae.encode(ctx.hook_activations(batch))

    return _timed(ctx, work)


def peak_memory(args: argparse.Namespace, n_windows: int) -> dict[str, float]:
    """Peak memory above the baseline taken after loading and one warm-up batch."""
    import torch

    ctx = _setup(args, n_windows)
    next(iter(ctx.encoded_batches(ctx.batch_size)))
    if str(ctx.device).startswith("cuda"):
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _streaming_pass(ctx, STREAMING)
        torch.cuda.synchronize()
        return {
            "windows": n_windows,
            "peak_above_baseline_mib": round((torch.cuda.max_memory_allocated() - baseline) / 2**20, 1),
        }
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page

    base, peak, running = rss(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _streaming_pass(ctx, STREAMING)
    running[0] = False
    sampler.join()
    return {"windows": n_windows, "peak_above_baseline_mib": round((peak[0] - base) / 2**20, 1)}


def _arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    from tsae_evals.data.documents import DEFAULT_DATASET
    from tsae_evals.models import DEFAULT_MODEL

    parser.add_argument("--windows", type=int, default=64, help="windows of 128 tokens (default 64)")
    parser.add_argument("--sae", default=str(DEMO_SAE) if (DEMO_SAE / "cfg.json").is_file() else None)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats, best kept (default 3)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF directory")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="as run's --dataset")
    parser.add_argument("--streaming-only", action="store_true", help="skip context_switch and the memory runs")
    parser.add_argument("--profile", action="store_true", help="per-stage times and top operators (to stderr)")
    parser.add_argument("--memory-only", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = _arguments(parser)
    if args.memory_only is not None:
        print(json.dumps(peak_memory(args, args.memory_only)))
        return
    report = speed(args)
    if args.streaming_only:
        print(json.dumps(report, indent=2))
        _summary(report)
        return
    memory = []
    for windows in (args.windows, 4 * args.windows):
        command = [sys.executable, __file__, "--memory-only", str(windows), "--device", args.device]
        command += ["--batch-size", str(args.batch_size), "--model", args.model, "--dataset", args.dataset]
        if args.sae:
            command += ["--sae", args.sae]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        memory.append(json.loads(output.strip().splitlines()[-1]))
    report["peak_memory_mib"] = {str(m["windows"]): m["peak_above_baseline_mib"] for m in memory}
    small, large = (m["peak_above_baseline_mib"] for m in memory)
    report["memory_4x_tokens_over_1x"] = round(large / small, 3) if small else float("nan")
    # "many_saes": the 1/4/8-SAE ratios of benchmarks/many_saes.py go here.
    print(json.dumps(report, indent=2))
    _summary(report)


def _summary(report: dict[str, Any]) -> None:
    rates = report["tokens_per_s"]
    line = (
        f"{report['device']}, {report['batch_size']} windows per batch: floor {rates['floor']} tokens/s; "
        + ", ".join(f"{name} {rates[name]} tokens/s ({report['over_floor'][name]}x)" for name in STREAMING)
        + f"; streaming temporal evals {rates['streaming_evals']} tokens/s, / floor = {report['streaming_over_floor']}x"
    )
    if "all_temporal_over_floor" in report:
        line += (
            f"; with context_switch = {report['all_temporal_over_floor']}x "
            f"(context_switch / its own floor = {report['context_switch_over_its_floor']}x); "
            f"peak memory at 4x tokens / 1x = {report['memory_4x_tokens_over_1x']}"
        )
    print(line)


if __name__ == "__main__":
    main()
