"""Window-size ablation for windowed architectures: a one-variant sweep whose grid is the window, compared with
its smallest window (see tsae_evals.sweep; recipes/window_ablation.yaml is the same as a file)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tsae_evals.errors import UsageError
from tsae_evals.runner import RunRequest
from tsae_evals.settings import parse_value
from tsae_evals.sweep import SweepRequest, SweepResult, run_recipe
from tsae_evals.sweep.recipe import Recipe, RunSpec, VariantSpec
from tsae_evals.training import TrainRequest, training_architectures


@dataclass(frozen=True)
class WindowAblation:
    """One `ablate-window` invocation."""

    train: TrainRequest
    """Training settings shared by every window (its `out` is the sweep's directory)."""
    windows: tuple[int, ...]
    """Window sizes to sweep; the first is the control the others are compared with."""
    run: RunRequest
    """Evaluation settings (evals, windows, batch size, config overrides)."""


def window_option(arch: str) -> str:
    """The `--set` name of an architecture's window, or a UsageError naming the architectures that have one."""
    architectures = training_architectures()
    option = getattr(architectures[arch].options_cls, "window_option", None) if arch in architectures else None
    if option is None:
        windowed = sorted(name for name, a in architectures.items() if getattr(a.options_cls, "window_option", None))
        raise UsageError(f"{arch!r} has no window to sweep", f"use one of {', '.join(windowed)}")
    return str(option)


def window_recipe(request: WindowAblation) -> Recipe:
    """The ablation as a sweep recipe: one variant, its window as the grid, one seed."""
    option = window_option(request.train.arch)
    if not request.windows or min(request.windows) < 1:
        raise UsageError("--windows needs positive integers", "e.g. --windows 1,2,4,8")
    train = request.train
    settings = {
        "tokens": train.tokens,
        "expansion": train.expansion,
        "k": train.k,
        "lr": train.lr,
        "batch_size_tokens": train.batch_size_tokens,
        "context_size": train.context_size,
        "max_windows_per_document": train.max_windows_per_document,
        "activations": train.activations,
    }
    if train.l1_coefficient is not None:
        settings["l1_coefficient"] = train.l1_coefficient
    options = {}
    for assignment in train.options:
        name, _, raw = assignment.partition("=")
        options[name] = parse_value(raw)
    return Recipe(
        name=f"window-ablation-{train.arch}",
        description=f"{train.arch} at {option} = {', '.join(map(str, request.windows))}, against the first.",
        model=train.model,
        layer=train.layer,
        dataset=train.dataset,
        data_seed=train.seed if train.data_seed is None else train.data_seed,
        seeds=[train.seed],
        train=settings,
        control=train.arch,
        variants=[VariantSpec(name=train.arch, arch=train.arch, set=options, grid={option: list(request.windows)})],
        evals=[request.run.eval_names],
        run=RunSpec(
            n_windows=request.run.n_windows,
            batch_size=request.run.batch_size,
            config=list(request.run.config_overrides),
            allow_degenerate=request.run.allow_degenerate,
        ),
    )


def ablate_window(request: WindowAblation, model_loader: Callable[[str, str], Any] | None = None) -> SweepResult:
    """Train (or reuse) one SAE per window under `train.out`, evaluate them together, write the sweep's table."""
    recipe = window_recipe(request)
    return run_recipe(recipe, request.train.out, SweepRequest(device=request.train.device), model_loader)
