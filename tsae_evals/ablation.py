"""Window-size ablation for windowed architectures: train one SAE per window, evaluate them together, tabulate."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tsae_evals.errors import UsageError
from tsae_evals.registry import parse_eval_names
from tsae_evals.runner import EvalOutcome, RunRequest, build_configs, check_results_dir, run
from tsae_evals.training import TrainRequest, train, training_architectures


@dataclass(frozen=True)
class WindowAblation:
    """One `ablate-window` invocation."""

    train: TrainRequest
    """Training settings shared by every window (its `out` is the directory the SAEs go under)."""
    windows: tuple[int, ...]
    """Window sizes to sweep."""
    run: RunRequest
    """Evaluation settings (its `sae_specs` are filled with the trained SAEs)."""


def window_option(arch: str) -> str:
    """The `--set` name of an architecture's window, or a UsageError naming the architectures that have one."""
    architectures = training_architectures()
    option = getattr(architectures[arch].options_cls, "window_option", None) if arch in architectures else None
    if option is None:
        windowed = sorted(name for name, a in architectures.items() if getattr(a.options_cls, "window_option", None))
        raise UsageError(f"{arch!r} has no window to sweep", f"use one of {', '.join(windowed)}")
    return str(option)


def ablate_window(
    request: WindowAblation, model_loader: Callable[[str, str], Any] | None = None
) -> tuple[list[dict[str, Any]], list[EvalOutcome]]:
    """Train (or reuse) one SAE per window, run the evals on all of them, return one table row per window."""
    option = window_option(request.train.arch)
    if not request.windows or min(request.windows) < 1:
        raise UsageError("--windows needs positive integers", "e.g. --windows 1,2,4,8")
    # The evaluation's own bad input must surface before minutes of training, not after.
    build_configs(parse_eval_names(request.run.eval_names), request.run.config_overrides)
    check_results_dir(request.run.results_dir)
    directories = {}
    for window in request.windows:
        out = request.train.out / f"{request.train.arch}-w{window}"
        if not (out / "cfg.json").is_file():
            options = (*request.train.options, f"{option}={window}")
            train(dataclasses.replace(request.train, out=out, options=options), model_loader=model_loader)
        directories[window] = out
    outcomes = run(dataclasses.replace(request.run, sae_specs=[str(p) for p in directories.values()]), model_loader)
    rows = []
    for window, directory in directories.items():
        row: dict[str, Any] = {option: window}
        for outcome in outcomes:
            if outcome.sae_label.endswith(directory.name) and outcome.status in {"ok", "reused"}:
                row.update({f"{outcome.eval_name}.{k}": v for k, v in outcome.summary.items()})
        rows.append(row)
    table_path = request.run.results_dir / "window_ablation" / f"{request.train.arch}.json"
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(json.dumps({"arch": request.train.arch, "option": option, "rows": rows}, indent=2))
    return rows, outcomes


def format_table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    columns = list(dict.fromkeys(key for row in rows for key in row))
    return tabulate([[row.get(c) for c in columns] for row in rows], headers=columns, floatfmt=".4g")
