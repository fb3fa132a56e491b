"""`sweep RECIPE.yaml`: train every variant of a recipe once per seed (reusing SAEs whose settings are unchanged),
evaluate them together in one run, and write one comparison table against the control.

Layout of the output directory:
  saes/<variant>-s<seed>/      the trained SAEs (sae-lens directories) with `sweep_settings.json`
  eval_results/<eval>/...      every result file (the run's reuse makes a killed sweep resume)
  table.md, table.csv          the comparison; effects.png its picture
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tsae_evals.errors import UsageError
from tsae_evals.sweep.recipe import Recipe, Variant, check_recipe, expand, load_recipe, referenced_variant

__all__ = ["SweepRequest", "SweepResult", "load_recipe", "run_recipe", "run_sweep", "sae_directory"]

SETTINGS_FILE = "sweep_settings.json"


@dataclass(frozen=True)
class SweepRequest:
    """One `sweep` invocation."""

    recipe_path: Path | None = None
    """The YAML recipe (None when a recipe is built in code, as `ablate-window` does)."""
    out: Path | None = None
    """Output directory; None: sweeps/<recipe name>."""
    device: str = "cpu"
    """Torch device of training and evaluation."""
    only: tuple[str, ...] = ()
    """Variant names to run (with their controls); empty: all."""
    tokens: int | None = None
    """Training tokens of every variant instead of the recipe's (a quicker or larger run of the same recipe)."""
    executor: Literal["local", "ray"] = "local"
    """local: everything in this process; ray: one Ray task per SAE to train and per (variant, eval)."""
    ray_address: str | None = None
    """Ray cluster to join (None: $RAY_ADDRESS or the running local cluster); executor ray only."""
    cpus_per_task: float = 1.0
    """CPUs each Ray task reserves (a cuda device also reserves one GPU per task)."""


@dataclass
class SweepResult:
    """What a sweep produced."""

    out: Path
    table_markdown: Path
    table_csv: Path
    plot: Path | None
    rows: list[dict[str, Any]]
    outcomes: list[Any]


def sae_directory(out: Path, variant: Variant, seed: int) -> Path:
    return out / "saes" / f"{variant.name}-s{seed}"


def _selected(variants: list[Variant], only: tuple[str, ...]) -> list[Variant]:
    if not only:
        return variants
    names = {v.name for v in variants}
    unknown = sorted(set(only) - names)
    if unknown:
        raise UsageError(f"--only names unknown variants {unknown}", f"variants: {', '.join(sorted(names))}")
    wanted = set(only) | {v.control for v in variants if v.name in only}
    # A variant's `@NAME` options need NAME trained first.
    for variant in variants:
        if variant.name in wanted:
            wanted |= {name for value in variant.options.values() if (name := referenced_variant(value))}
    return [v for v in variants if v.name in wanted]


def train_requests(recipe: Recipe, variants: list[Variant], out: Path, device: str) -> Iterator[Any]:
    """`(variant, seed, TrainRequest)` for every SAE of the sweep, in training order."""
    from tsae_evals.training import TrainRequest

    for variant in variants:
        for seed in recipe.seeds:
            options = tuple(
                f"{key}={sae_directory(out, _by_name(variants, reference), seed)}"
                if (reference := referenced_variant(value))
                else f"{key}={json.dumps(value)}"
                for key, value in variant.options.items()
            )
            request = TrainRequest(
                arch=variant.arch,
                layer=recipe.layer,
                out=sae_directory(out, variant, seed),
                model=recipe.model,
                dataset=recipe.dataset,
                seed=seed,
                data_seed=recipe.data_seed,
                device=device,
                options=options,
                checkpoints=False,
                **variant.train,
            )
            yield variant, seed, request


def _by_name(variants: list[Variant], name: str) -> Variant:
    return next(v for v in variants if v.name == name)


def is_trained(directory: Path, settings_hash: str) -> bool:
    settings = directory / SETTINGS_FILE
    return (
        (directory / "cfg.json").is_file()
        and settings.is_file()
        and (json.loads(settings.read_text()).get("settings_hash") == settings_hash)
    )


def run_sweep(request: SweepRequest, model_loader: Callable[[str, str], Any] | None = None) -> SweepResult:
    """Run the recipe file the request names (see run_recipe)."""
    if request.recipe_path is None:
        raise UsageError("no recipe given", "pass a YAML recipe, e.g. recipes/all_architectures.yaml")
    from tsae_evals.sweep.recipe import publish_target
    from tsae_evals.sweep.table import publish

    recipe = load_recipe(request.recipe_path)
    result = run_recipe(recipe, request.out or Path("sweeps") / recipe.name, request, model_loader)
    if recipe.publish is not None:
        if request.tokens is None and not request.only:
            publish(recipe, result.rows, publish_target(recipe, request.recipe_path))
        else:
            print(f"{recipe.publish} not updated: --tokens or --only changed the recipe", flush=True)
    return result


def run_recipe(
    recipe: Recipe, out: Path, request: SweepRequest, model_loader: Callable[[str, str], Any] | None = None
) -> SweepResult:
    """Train what is missing, evaluate everything, write the table under `out`; returns where it all went."""
    from tsae_evals.models import check_device, load_model
    from tsae_evals.registry import parse_eval_names
    from tsae_evals.runner import RunRequest, build_configs, check_results_dir, run
    from tsae_evals.sweep.table import comparison_rows, write_plot, write_tables
    from tsae_evals.training import TrainRequest, train

    check_recipe(recipe, where=f"recipe {recipe.name}")
    if request.tokens is not None:
        recipe = recipe.model_copy(update={"description": f"{recipe.description.strip()} (tokens: {request.tokens})"})
    variants = [
        dataclasses.replace(v, train={**v.train, "tokens": request.tokens}) if request.tokens else v
        for v in _selected(expand(recipe), request.only)
    ]
    eval_names = ",".join(recipe.evals)
    # The evaluation's bad input must surface before minutes of training, not after.
    build_configs(parse_eval_names(eval_names), recipe.run.config)
    check_results_dir(out / "eval_results")
    check_device(request.device)

    if request.executor == "ray":
        from tsae_evals.sweep.ray_executor import absolute, connect

        connect(request.ray_address)
        out = absolute(out)

    jobs = list(train_requests(recipe, variants, out, request.device))
    hashes = [v.settings_hash(recipe, s) for v, s, _ in jobs]
    pending = [index for index, (job, h) in enumerate(zip(jobs, hashes, strict=True)) if not is_trained(job[2].out, h)]
    run_request = RunRequest(
        sae_specs=[str(r.out) for _, _, r in jobs],
        eval_names=eval_names,
        model=recipe.model,
        dataset=recipe.dataset,
        n_windows=recipe.run.n_windows,
        context_size=int(recipe.train.get("context_size", TrainRequest.context_size)),
        batch_size=recipe.run.batch_size,
        seed=recipe.data_seed,
        device=request.device,
        results_dir=out / "eval_results",
        config_overrides=list(recipe.run.config),
        allow_degenerate=recipe.run.allow_degenerate,
        named_may_be_unavailable=True,
        plots=recipe.run.plots,
    )
    if request.executor == "ray":
        from tsae_evals.sweep.ray_executor import RayPlan, run_on_ray

        plan = RayPlan(jobs, set(pending), hashes, run_request, [spec.name for spec in parse_eval_names(eval_names)])
        outcomes = run_on_ray(
            plan,
            address=request.ray_address,
            device=request.device,
            cpus_per_task=request.cpus_per_task,
            model_loader=model_loader,
        )
    else:
        models: dict[str, Any] = {}

        def shared_model(name: str, device: str) -> Any:
            if name not in models:
                models[name] = (model_loader or load_model)(name, device)
            return models[name]

        for position, index in enumerate(pending, 1):
            variant, seed, train_request = jobs[index]
            print(f"[{position}/{len(pending)}] training {variant.name} seed {seed}", flush=True)
            trained_at = time.time()
            train(train_request, model_loader=shared_model)
            mark_trained(train_request.out, hashes[index], time.time() - trained_at)
        outcomes = run(run_request, shared_model)

    rows = comparison_rows(recipe, variants, {(v.name, s): r.out for v, s, r in jobs}, out / "eval_results")
    markdown, csv_path = write_tables(recipe, rows, out)
    plot = write_plot(rows, out / "effects.png")
    return SweepResult(out, markdown, csv_path, plot, rows, outcomes)


def mark_trained(directory: Path, settings_hash: str, wall_time_s: float) -> None:
    """Record the settings an SAE was trained with, so a rerun reuses it only while they are unchanged."""
    payload = {"settings_hash": settings_hash, "wall_time_s": round(wall_time_s, 1)}
    (directory / SETTINGS_FILE).write_text(json.dumps(payload, indent=2))
