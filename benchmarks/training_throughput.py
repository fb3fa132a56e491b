"""Training throughput against the model forward, one run: is training bound by the model or by our loop?

Measures, with the model loaded once:
- forward: the model up to the hook on `--tokens` tokens of windows (tokens/s), the floor of any training;
- stream: `train --activations stream` (the model runs inside training, a refreshed buffer);
- cache write + disk: the same training through the activation cache, the first time (forward and writing
  included) and again with the cache warm (only the SAE's steps and the reads).
Goal (the foundations and sweep issue): streamed training at least half the forward's throughput. Reports ratios.

    .venv/bin/python benchmarks/training_throughput.py [--tokens 100000] [--arch control_relu] [--device cuda]
        [--model DIR] [--batch-size-tokens 2048]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--arch", default="control_relu")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch-size-tokens", type=int, default=2048)
    parser.add_argument("--forward-batch", type=int, default=16, help="windows per forward")
    args = parser.parse_args()

    import torch

    from custom_saes.training.activations import hook_activations
    from tsae_evals.data import load_documents
    from tsae_evals.models import load_model
    from tsae_evals.quiet import quiet_libraries
    from tsae_evals.training import TrainRequest, train
    from tsae_evals.training.activation_cache import token_chunks, windows_for_tokens

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(cores)
    hook = f"blocks.{args.layer}.hook_resid_post"
    with quiet_libraries():
        model = load_model(args.model, args.device)
    documents = load_documents("sae-probes", seed=0, max_documents=10**6)
    n_windows = windows_for_tokens(args.tokens, 128)
    tokens = torch.cat(list(token_chunks(model.tokenizer, documents, n_windows, 128, 16)))
    counted = n_windows * 127

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    started = time.perf_counter()
    for _ in hook_activations(model, hook, tokens, args.forward_batch):
        pass
    sync()
    forward = counted / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        common = dict(
            arch=args.arch,
            layer=args.layer,
            tokens=counted,
            model=args.model,
            device=args.device,
            batch_size_tokens=args.batch_size_tokens,
            max_windows_per_document=16,
            activation_cache_dir=root / "cache",
            checkpoints=False,
        )
        timings = {}
        for label, activations, out in (
            ("stream", "stream", "s"),
            ("cache write + train", "disk", "d1"),
            ("disk (cache warm)", "disk", "d2"),
        ):
            started = time.perf_counter()
            train(TrainRequest(out=root / out, activations=activations, **common), lambda *_: model)
            sync()
            timings[label] = counted / (time.perf_counter() - started)

    print(f"device {args.device}, {args.arch}, {counted} tokens, batch {args.batch_size_tokens} tokens")
    print(f"forward to {hook}: {forward:,.0f} tokens/s")
    for label, rate in timings.items():
        print(f"train, {label}: {rate:,.0f} tokens/s = {rate / forward:.2f}x the forward")
    print(f"streamed training / forward = {timings['stream'] / forward:.2f} (goal: at least 0.5)")


if __name__ == "__main__":
    main()
