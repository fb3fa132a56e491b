"""Measure the noise `check` holds results to: rerun the evals once per seed and keep k × SD per metric.

A run's seed orders the documents its windows are cut from (so each seed reads another subset of the data) and
seeds every shuffle null and random baseline, so the spread over seeds is the spread a rerun on other data of
the same source would show. A metric with SD 0 does not depend on the seed at all; only the float floor
(`tsae_evals.report.regression.abs_floor`) then separates a change from a recomputation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tsae_evals.errors import UsageError
from tsae_evals.report.records import RecordSet, load_records
from tsae_evals.report.regression import DEFAULT_K, Tolerances, build_tolerances, check_measurement
from tsae_evals.runner import RunRequest, run


def measure_tolerances(
    request: RunRequest,
    seeds: Sequence[int],
    k: float = DEFAULT_K,
    work_dir: Path = Path("tolerance_runs"),
    model_loader: Callable[[str, str], Any] | None = None,
) -> Tolerances:
    """Run `request` once per seed into `work_dir/seed-N` (recomputing: a reused result would be no rerun) and
    build the tolerances of one SAE from what those runs wrote."""
    from tsae_evals.saes import split_sae_specs

    seeds = list(seeds)
    check_measurement(seeds, k)
    if len(split_sae_specs(request.sae_specs)) != 1:
        raise UsageError(
            f"tolerances are measured on one SAE; --sae names {len(split_sae_specs(request.sae_specs))}",
            "pass one SAE (its tolerances serve any SAE checked on the same evals and data)",
        )
    loader = _loading_once(model_loader)
    runs: dict[int, RecordSet] = {}
    for seed in seeds:
        seeded = dataclasses.replace(request, seed=seed, results_dir=Path(work_dir) / f"seed-{seed}", force=True)
        outcomes = run(seeded, model_loader=loader)
        broken = [
            o
            for o in outcomes
            if o.status not in {"ok", "unavailable"} or (o.preflight is not None and o.preflight.failed)
        ]
        if broken:
            first = broken[0]
            reason = first.message or (first.preflight.headline() if first.preflight else first.status)
            raise UsageError(
                f"seed {seed}: {first.eval_name} on {first.sae_label} did not give a result ({first.status}: {reason})",
                "make `python -m tsae_evals run` succeed with the same arguments first; noise is measured on "
                "results, not on failures",
            )
        # Only this call's files: the seed folder may hold older results of other evals or SAEs.
        runs[seed] = load_records([o.path for o in outcomes if o.path is not None])
    return build_tolerances(runs, k)


def _loading_once(model_loader: Callable[[str, str], Any] | None) -> Callable[[str, str], Any]:
    """One model load for all the seeds: `run` loads its model on every call, and a hub model takes minutes."""
    from tsae_evals.models import load_model

    loaded: dict[tuple[str, str], Any] = {}

    def load(name: str, device: str) -> Any:
        if (name, device) not in loaded:
            loaded[name, device] = (model_loader or load_model)(name, device)
        return loaded[name, device]

    return load
