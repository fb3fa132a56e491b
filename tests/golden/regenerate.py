"""Regenerate the golden results: `.venv/bin/python -m tests.golden.regenerate` (from the repository root).

Runs a fixed set of fast evals on the tiny model (tests/helpers.py) with a fixed tiny SAE and writes the records
to tests/golden/baseline/, then reruns them over SEEDS and writes baseline/tolerances.json (k × SD per metric).
tests/unit/test_golden.py reruns the same evals and `check --two-sided`s them against these files, so a change
that shifts a metric beyond its measured noise fails CI. Regenerate after a deliberate change to an eval (bump its
version when its numbers change meaning), to the tiny model or SAE, or to the corpus, and say why in the commit.

Everything here is fixed so that a rerun anywhere reproduces the files: the SAE (tiny_sae, seed 0), the model
(tiny_model, seed 0), the corpus (helpers.corpus, seed 0) under a relative name (records name their dataset as it
was given, so an absolute temporary path would make every rerun "another dataset"), a fresh artifacts folder, CPU.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from tests import helpers

GOLDEN_DIR = Path(__file__).resolve().parent
BASELINE = GOLDEN_DIR / "baseline"
EVALS = (
    "core",
    "temporal_stability",
    "feature_lifetimes",
    "context_switch",
    "causal_interventions",
    "lifecycle",
    "position_invariance",
    "feature_redundancy",
    "topic_unlearning_standin",
    "absorption",
    "agreement",
    "coreference",
    "disambiguation",
)
"""Every registered eval that runs on the tiny model in seconds, at its default config: the temporal and
analysis evals on the run's windows, and those that bring their own text (absorption and the linguistic probes
give mostly NaN on a random 2-layer model: what is pinned there is which metrics are NaN, and the finite rest).
Left out: unlearning and hierarchy (cannot run on it), autointerp (needs an LLM judge), and the SAE-Bench probing
evals (sparse_probing, sparse_probing_sae_probes, scr, tpp: minutes at their defaults)."""
SEEDS = (0, 1, 2, 3, 4)
"""Seeds the tolerances are measured over; seed 0 is also the baseline's, so its rerun doubles as a determinism
check."""
SEED = 0
SAE_NAME = "golden_sae"
CORPUS = "golden_corpus.txt"
"""Relative to the workspace the runs chdir into: see the module docstring."""
N_WINDOWS = 32
"""Of the corpus' 60 documents (two windows each at most), a run reads 16: each seed reads another subset."""
CONTEXT_SIZE = 80
"""causal_interventions' defaults need 70 positions."""
BATCH_SIZE = 8


@cache
def golden_model(device: str = "cpu") -> Any:
    return helpers.tiny_model(n_ctx=CONTEXT_SIZE, device=device)


def golden_loader(name: str, device: str) -> Any:
    return golden_model(device)


def golden_sae() -> Any:
    return helpers.tiny_sae(seed=0)


@contextmanager
def workspace(root: Path) -> Iterator[Path]:
    """`root` holding the corpus under its relative name, as the working directory for the duration."""
    root.mkdir(parents=True, exist_ok=True)
    helpers.write_corpus(root / CORPUS, words_per_document=200)
    previous = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(previous)


def golden_request(sae_dir: Path, results_dir: Path, artifacts_dir: Path, seed: int = SEED) -> Any:
    from tsae_evals.runner import RunRequest

    return RunRequest(
        sae_specs=[str(Path(sae_dir).resolve())],
        eval_names=",".join(EVALS),
        dataset=CORPUS,
        n_windows=N_WINDOWS,
        context_size=CONTEXT_SIZE,
        batch_size=BATCH_SIZE,
        seed=seed,
        device="cpu",
        results_dir=Path(results_dir).resolve(),
        artifacts_dir=Path(artifacts_dir).resolve(),
        force=True,
    )


def run_golden(sae: Any, root: Path, results_dir: Path, name: str = SAE_NAME) -> list[Any]:
    """Save `sae` as root/`name` and run the golden evals on it into `results_dir`; every eval must succeed."""
    from tsae_evals.runner import run

    sae_dir = root / name
    helpers.save_sae(sae, sae_dir)
    with workspace(root):
        outcomes = run(golden_request(sae_dir, results_dir, root / "artifacts"), model_loader=golden_loader)
    failed = [f"{o.eval_name}: {o.status} {o.message}" for o in outcomes if o.status != "ok"]
    if failed:
        raise RuntimeError("golden run failed: " + "; ".join(failed))
    return outcomes


def _clear_baseline() -> None:
    """Remove the previous golden files (and only them)."""
    for path in BASELINE.rglob("*_eval_results.json"):
        path.unlink()
    (BASELINE / "tolerances.json").unlink(missing_ok=True)
    for folder in sorted(BASELINE.glob("*/"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _not_reproduced(tolerances: Any) -> list[str]:
    """Metrics whose seed-0 rerun (inside the tolerance measurement) is not bit-identical to the baseline."""
    from tsae_evals.report.records import load_records

    index = list(tolerances.seeds).index(SEED)
    found = []
    for loaded in load_records([BASELINE]).records:
        for key, value in loaded.numbers().items():
            noise = tolerances.metrics[loaded.eval_name].get(key)
            again = noise.values[index] if noise is not None else None
            same = again is not None and (value == again or (math.isnan(value) and math.isnan(again)))
            if not same:
                found.append(f"{loaded.eval_name}.{key}: {value!r} then {again!r}")
    return found


def main() -> int:
    import torch

    from tsae_evals.quiet import quiet_libraries
    from tsae_evals.regression_noise import measure_tolerances
    from tsae_evals.report.regression import DEFAULT_K, write_tolerances

    torch.set_num_threads(int(os.environ.get("TSAE_EVALS_THREADS", "1")))
    started = time.perf_counter()
    _clear_baseline()
    with tempfile.TemporaryDirectory(prefix="tsae-golden-") as scratch, quiet_libraries():
        root = Path(scratch)
        run_golden(golden_sae(), root, BASELINE)
        baseline_s = time.perf_counter() - started
        with workspace(root):
            request = golden_request(root / SAE_NAME, BASELINE, root / "artifacts")
            tolerances = measure_tolerances(request, SEEDS, DEFAULT_K, root / "seeds", model_loader=golden_loader)
    write_tolerances(BASELINE / "tolerances.json", tolerances)
    n_metrics = sum(len(metrics) for metrics in tolerances.metrics.values())
    seeds = ",".join(map(str, SEEDS))
    print(f"wrote {BASELINE}: {len(EVALS)} records in {baseline_s:.1f} s, {n_metrics} tolerances over seeds {seeds}")
    print(f"total {time.perf_counter() - started:.1f} s")
    differing = _not_reproduced(tolerances)
    if differing:
        print(f"NOT bit-reproducible between two runs of seed {SEED} ({len(differing)}):", *differing, sep="\n  ")
        return 1
    print(f"determinism: every metric of seed {SEED} bit-identical across two runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
