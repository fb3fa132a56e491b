"""`sweep --executor ray`: the same sweep as one Ray task per SAE to train and one per (variant, eval) to evaluate,
on an existing Ray cluster (or a local instance a caller started). The driver only schedules and writes the table.

Every task writes where the local sweep writes (`out`, made absolute), so the output directory must be on storage
every node sees. A training task waits for the SAEs its `@NAME` options name; an evaluation task waits for its
variant's SAEs. Resumption is the local sweep's: trained SAEs and finished results on disk are reused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tsae_evals.errors import UsageError


@dataclass(frozen=True)
class RayPlan:
    """What the Ray executor runs: every training job (and which are pending) and the whole sweep's evaluation."""

    jobs: list[tuple[Any, int, Any]]
    """`(variant, seed, TrainRequest)` of every SAE in the sweep, in training order."""
    pending: set[int]
    """Indices into `jobs` whose SAE must be (re)trained."""
    settings_hashes: list[str]
    """Each job's settings hash (recorded beside its SAE)."""
    run_request: Any
    """The RunRequest of the whole sweep; each evaluation task runs it on one variant and one eval."""
    eval_names: list[str]
    """Every eval the recipe selects, groups expanded."""


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address` (None: $RAY_ADDRESS, else a running local cluster) unless already joined."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--executor ray needs Ray", "install it (pip install ray) or use --executor local") from exc
    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        _reachable(target)
        ray.init(address=target, log_to_driver=False)
    except (OSError, RuntimeError, ValueError) as exc:
        raise UsageError(
            f"no Ray cluster at {target!r} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
            "start one (ray start --head) or pass --ray-address HOST:PORT",
        ) from exc


def _reachable(target: str) -> None:
    """Ray waits about a minute on an address nobody listens at; a socket says so in seconds."""
    import socket

    host, separator, port = target.removeprefix("ray://").rpartition(":")
    if not separator or not port.isdigit():
        return  # "auto", "local" and the like: Ray finds (or fails to find) the cluster itself, quickly
    with socket.create_connection((host, int(port)), timeout=5):
        pass


def _set_threads() -> None:
    """Torch threads: TSAE_EVALS_THREADS if set, else the CPUs Ray assigned this task."""
    import ray
    import torch

    assigned = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(int(os.environ.get("TSAE_EVALS_THREADS", max(1, int(assigned)))))


def _train(request: Any, settings_hash: str, model_loader: Callable[[str, str], Any] | None, *_after: Any) -> str:
    import time

    from tsae_evals.sweep import mark_trained
    from tsae_evals.training import train

    _set_threads()
    started = time.time()
    train(request, model_loader=model_loader)
    mark_trained(request.out, settings_hash, time.time() - started)
    return str(request.out)


def _evaluate(run_request: Any, model_loader: Callable[[str, str], Any] | None, *_after: Any) -> list[Any]:
    from tsae_evals.runner import run

    _set_threads()
    return run(run_request, model_loader)


def run_on_ray(
    plan: RayPlan,
    *,
    address: str | None,
    device: str,
    cpus_per_task: float,
    model_loader: Callable[[str, str], Any] | None = None,
) -> list[Any]:
    """Train the pending SAEs and evaluate every (variant, eval) as Ray tasks; returns every EvalOutcome."""
    import ray

    from tsae_evals.sweep.recipe import referenced_variant

    connect(address)
    resources: dict[str, Any] = {"num_cpus": cpus_per_task}
    if device.startswith("cuda"):
        resources["num_gpus"] = 1
    train_task = ray.remote(**resources)(_train)
    evaluate_task = ray.remote(**resources)(_evaluate)

    trained: dict[tuple[str, int], Any] = {}
    for index, (variant, seed, request) in enumerate(plan.jobs):
        if index not in plan.pending:
            continue
        after = [
            trained[(name, seed)]
            for value in variant.options.values()
            if (name := referenced_variant(value)) and (name, seed) in trained
        ]
        trained[(variant.name, seed)] = train_task.options(name=f"train {variant.name} s{seed}").remote(
            request, plan.settings_hashes[index], model_loader, *after
        )

    evaluations = []
    for name in dict.fromkeys(variant.name for variant, _, _ in plan.jobs):
        seeds = [(seed, request) for variant, seed, request in plan.jobs if variant.name == name]
        after = [trained[(name, seed)] for seed, _ in seeds if (name, seed) in trained]
        for eval_name in plan.eval_names:
            request = replace(plan.run_request, sae_specs=[str(r.out) for _, r in seeds], eval_names=eval_name)
            evaluations.append(evaluate_task.options(name=f"{eval_name} {name}").remote(request, model_loader, *after))
    return [outcome for outcomes in ray.get(evaluations) for outcome in outcomes]


def absolute(out: Path) -> Path:
    """Workers may start elsewhere: every path they are handed is absolute."""
    return out.expanduser().resolve()
