"""Run registered evals on SAEs: check every input first, then evaluate, writing each result as it finishes."""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from tsae_evals.data import DEFAULT_DATASET
from tsae_evals.errors import UsageError
from tsae_evals.models import DEFAULT_MODEL
from tsae_evals.registry import EvalSpec, parse_eval_names

if TYPE_CHECKING:
    from sae_lens import SAE

    from tsae_evals.data import TokenWindows
    from tsae_evals.preflight import PreflightReport
    from tsae_evals.saes import SAERef

PROBE_WINDOWS = 8


@dataclass
class RunRequest:
    """One `run` invocation."""

    sae_specs: list[str]
    eval_names: str
    model: str | None = None
    dataset: str = DEFAULT_DATASET
    n_windows: int = 64
    context_size: int = 128
    batch_size: int = 8
    seed: int = 0
    device: str = "cpu"
    results_dir: Path = Path("eval_results")
    config_overrides: list[str] = field(default_factory=list)
    allow_degenerate: bool = False
    plots: bool = False
    verbose: bool = False


@dataclass
class EvalOutcome:
    """What happened to one (SAE, eval) pair."""

    sae_label: str
    eval_name: str
    status: Literal["ok", "failed", "skipped"]
    preflight: PreflightReport
    summary: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    message: str = ""
    plots: list[Path] = field(default_factory=list)


def build_configs(specs: list[EvalSpec], overrides: list[str]) -> dict[str, BaseModel]:
    """Default configs, with `eval.field=value` overrides (value parsed as JSON when it parses) validated."""
    values: dict[str, dict[str, Any]] = {spec.name: {} for spec in specs}
    for override in overrides:
        key, sep, raw = override.partition("=")
        eval_name, dot, field_name = key.partition(".")
        if not sep or not dot:
            raise UsageError(
                f"malformed --config {override!r}", "write it as eval.field=value, e.g. core.batch_size_prompts=4"
            )
        if eval_name not in values:
            raise UsageError(
                f"--config {override!r} names eval {eval_name!r}, which this run does not include",
                "add it to --evals or drop the override",
            )
        try:
            values[eval_name][field_name] = json.loads(raw)
        except json.JSONDecodeError:
            values[eval_name][field_name] = raw
    configs = {}
    for spec in specs:
        try:
            configs[spec.name] = spec.config_cls(**values[spec.name])
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UsageError(
                f"invalid --config for {spec.name}: {'.'.join(map(str, first['loc']))}: {first['msg']}",
                f"see the fields of {spec.config_cls.__name__} (python -m tsae_evals list --configs)",
            ) from None
    return configs


@dataclass
class _Prepared:
    ref: SAERef
    sae: SAE[Any]
    model_name: str
    hook_name: str


def run(request: RunRequest, model_loader: Callable[[str, str], Any] | None = None) -> list[EvalOutcome]:
    """Evaluate every SAE on every eval; a failing eval is recorded and the others still run and save.

    `model_loader(name, device)` defaults to `tsae_evals.models.load_model`; tests pass a tiny model's.
    """
    from tsae_evals.data import load_documents, make_windows
    from tsae_evals.models import load_model
    from tsae_evals.saes import check_sae_fits_model, load_sae, resolve_sae, sae_hook_name, split_sae_specs

    specs = parse_eval_names(request.eval_names)
    configs = build_configs(specs, request.config_overrides)
    sae_specs = split_sae_specs(request.sae_specs)
    if not sae_specs:
        raise UsageError("no SAE given", "pass --sae DIR (a sae-lens directory) or --sae release:sae_id")
    refs = [resolve_sae(spec) for spec in sae_specs]
    labels = [ref.label for ref in refs]
    clashing = sorted({label for label in labels if labels.count(label) > 1})
    if clashing:
        raise UsageError(
            f"several SAEs would write results under the same name ({', '.join(clashing)})",
            "give the SAE directories distinct names, or evaluate them in separate runs with separate --results-dir",
        )
    prepared = []
    for ref in refs:
        sae = load_sae(ref, request.device).eval()
        model_name = request.model or sae.cfg.metadata.model_name or DEFAULT_MODEL
        prepared.append(_Prepared(ref, sae, model_name, sae_hook_name(sae)))

    documents = load_documents(request.dataset, seed=request.seed)
    models: dict[str, Any] = {}
    windows: dict[str, TokenWindows] = {}
    for item in prepared:
        if item.model_name not in models:
            model = (model_loader or load_model)(item.model_name, request.device)
            models[item.model_name] = model
            windows[item.model_name] = make_windows(
                model.tokenizer, documents, context_size=request.context_size, n_windows=request.n_windows
            )
        check_sae_fits_model(item.sae, models[item.model_name], item.ref.label)

    outcomes = []
    for item in prepared:
        outcomes.extend(_evaluate_sae(item, models[item.model_name], windows[item.model_name], specs, configs, request))
    return outcomes


@dataclass
class _SharedPass:
    results: dict[str, Any]
    errors: dict[str, Exception]
    wall_time_s: float


def _shared_pass(ctx: Any, specs: list[EvalSpec], configs: dict[str, BaseModel]) -> _SharedPass:
    """Feed every streaming eval from one model forward and one SAE pass per batch."""
    from tsae_evals.registry import feed_shared_pass

    started = time.perf_counter()
    scorers, errors = {}, {}
    for spec in specs:
        if spec.scorer is None:
            continue
        try:
            scorers[spec.name] = spec.scorer(ctx, configs[spec.name])
        except Exception as exc:
            errors[spec.name] = exc
    results, feed_errors = feed_shared_pass(ctx, scorers)
    return _SharedPass(results, {**errors, **feed_errors}, time.perf_counter() - started)


def _evaluate_sae(
    item: _Prepared,
    model: Any,
    windows: TokenWindows,
    specs: list[EvalSpec],
    configs: dict[str, BaseModel],
    request: RunRequest,
) -> list[EvalOutcome]:
    from tsae_evals.context import EvalContext
    from tsae_evals.preflight import run_preflight
    from tsae_evals.results import (
        Provenance,
        build_record,
        config_hash,
        write_json_atomic,
    )
    from tsae_evals.results import result_path as path_for

    ctx = EvalContext(
        model=model,
        sae=item.sae,
        sae_ref=item.ref,
        hook_name=item.hook_name,
        windows=windows,
        seed=request.seed,
        device=request.device,
        batch_size=request.batch_size,
    )
    probe = ctx.hook_activations(windows.tokens[:PROBE_WINDOWS])
    preflight = run_preflight(item.sae, probe, windows.first_text_position)
    outcomes = []
    shared = _shared_pass(ctx, specs, configs) if not preflight.failed or request.allow_degenerate else None
    for spec in specs:
        outcome = EvalOutcome(item.ref.label, spec.name, "skipped", preflight)
        outcomes.append(outcome)
        if preflight.failed and not request.allow_degenerate:
            outcome.message = f"preflight failed: {preflight.headline()} (pass --allow-degenerate to evaluate anyway)"
            continue
        config = configs[spec.name]
        started = time.perf_counter()
        try:
            if shared is not None and spec.name in shared.errors:
                raise shared.errors[spec.name]
            if shared is not None and spec.name in shared.results:
                result = shared.results[spec.name]
            else:
                result = spec.fn(ctx, config)
        except Exception as exc:  # any eval, plugins included, may fail; the others still run and save
            outcome.status, outcome.message = "failed", f"{type(exc).__name__}: {exc}"
            if request.verbose:
                traceback.print_exception(exc, file=sys.stderr)
            continue
        elapsed = time.perf_counter() - started
        if shared is not None and spec.name in shared.results:
            elapsed = shared.wall_time_s  # the shared pass serves every streaming eval at once
        provenance = Provenance(
            eval_name=spec.name,
            eval_version=spec.version,
            config_hash=config_hash(config),
            model=str(model.cfg.model_name),
            hook_name=item.hook_name,
            dataset=windows.source,
            n_windows=windows.n_windows,
            context_size=windows.context_size,
            prepend_bos=windows.prepend_bos,
            seed=request.seed,
            device=request.device,
            wall_time_s=round(elapsed, 3),
            preflight=preflight,
        )
        record = build_record(
            eval_name=spec.name,
            config=config,
            metrics=result.metrics_dict(),
            details=result.details_list(),
            unstructured=result.unstructured(),
            release=item.ref.release,
            sae_id=item.ref.sae_id,
            sae_cfg=item.sae.cfg.to_dict(),
            provenance=provenance,
        )
        outcome.path = path_for(request.results_dir, spec.name, item.ref.release, item.ref.sae_id)
        write_json_atomic(outcome.path, record)
        outcome.status, outcome.summary = "ok", result.summary()
        if request.plots and spec.plots is not None:
            try:
                outcome.plots = spec.plots(ctx, config, result, outcome.path.with_suffix(""))
            except Exception as exc:  # a picture must never cost the result it illustrates
                outcome.message = f"plots failed: {type(exc).__name__}: {exc}"
    return outcomes
