"""Run registered evals on SAEs: check every input first, then evaluate, writing each result as it finishes.

SAEs on the same model share one model forward per batch: every hook they read is cached in one pass that stops
after the deepest one, and each SAE encodes its own hook's activations once for all its streaming evals. A
result already on disk with the same eval version, config, SAE weights and data is reused (`force` recomputes),
so a killed sweep continues where it stopped.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from tsae_evals.context import RunShape
from tsae_evals.data import DEFAULT_DATASET
from tsae_evals.errors import EvalFailed, Unavailable, UsageError
from tsae_evals.models import DEFAULT_MODEL
from tsae_evals.registry import EvalSpec, parse_eval_names
from tsae_evals.settings import parse_value, validated

if TYPE_CHECKING:
    from sae_lens import SAE

    from tsae_evals.context import EvalContext
    from tsae_evals.data import TokenWindows
    from tsae_evals.preflight import PreflightReport
    from tsae_evals.registry import BatchScorer
    from tsae_evals.results import EvalResult
    from tsae_evals.saes import SAERef

PROBE_WINDOWS = 8
CPU_BATCH_SIZE = 8
"""Windows per forward on a CPU: larger batches gained nothing on 2 cores."""
GPU_BATCH_SIZE = 128
"""Windows per forward on a GPU: each call costs about 25 ms of overhead, so small batches starve it."""


@dataclass
class RunRequest:
    """One `run` invocation."""

    sae_specs: list[str]
    """What `--sae` named: sae-lens directories or `release:sae_id`."""
    eval_names: str
    """Comma-separated eval names or groups."""
    model: str | None = None
    """Model to run; None: the one each SAE's config records."""
    dataset: str = DEFAULT_DATASET
    """Text source the windows are cut from."""
    n_windows: int = 64
    """Token windows to cut."""
    context_size: int = 128
    """Tokens per window, BOS included."""
    batch_size: int | None = None
    """Windows per model forward; None: CPU_BATCH_SIZE on a CPU, GPU_BATCH_SIZE on a GPU."""
    seed: int = 0
    """Seed of document order, shuffles and baselines."""
    device: str = "cpu"
    """Torch device."""
    results_dir: Path = Path("eval_results")
    """Where results go: `<results_dir>/<eval>/<release>_<id>_eval_results.json`."""
    config_overrides: list[str] = field(default_factory=list)
    """`eval.field=value` settings."""
    allow_degenerate: bool = False
    """Evaluate SAEs that fail preflight anyway."""
    named_may_be_unavailable: bool = False
    """A named eval that does not apply to an SAE (e.g. `hierarchy` on a ReLU SAE) is recorded unavailable instead
    of refused: a sweep names the evals of a mix of architectures."""
    plots: bool = False
    """Draw each eval's pictures beside its JSON."""
    force: bool = False
    """Recompute results that exist with the same eval version, config, weights and data."""
    verbose: bool = False
    """Print tracebacks of failed evals."""
    artifacts_dir: Path | None = None
    """Where evals cache reusable work (SAE-Bench's activations and probes); None: `artifacts/` in the cache dir."""

    def effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return CPU_BATCH_SIZE if self.device == "cpu" else GPU_BATCH_SIZE


@dataclass
class EvalOutcome:
    """What happened to one (SAE, eval) pair."""

    sae_label: str
    eval_name: str
    status: Literal["ok", "reused", "failed", "skipped", "unavailable"]
    """unavailable: the eval's outside requirements are absent and it came in through a group (not an error)."""
    preflight: PreflightReport | None
    """None when every result of this SAE was reused (no preflight ran)."""
    summary: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    message: str = ""
    plots: list[Path] = field(default_factory=list)


def exit_code(outcomes: list[EvalOutcome]) -> int:
    """0 when every eval ran, was reused or was unavailable on SAEs that passed preflight; 1 otherwise."""
    done = {"ok", "reused", "unavailable"}
    failed = any(o.status not in done or (o.preflight is not None and o.preflight.failed) for o in outcomes)
    return 1 if failed else 0


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
        values[eval_name][field_name] = parse_value(raw)
    return {
        spec.name: validated(
            spec.config_cls,
            values[spec.name],
            what=f"--config for {spec.name}",
            fix=f"see the fields of {spec.config_cls.__name__} (python -m tsae_evals list --configs)",
        )
        for spec in specs
    }


def check_results_dir(results_dir: Path) -> None:
    """The results directory must be a writable directory, or creatable, before anything is computed (nothing is
    created here: a run refused later leaves no trace)."""
    import os

    if results_dir.exists() and not results_dir.is_dir():
        raise UsageError(
            f"--results-dir {results_dir} is a file, not a directory", "pass a directory (it is created if missing)"
        )
    existing = results_dir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--results-dir {results_dir}: {existing} is a file", "pass a path under a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write to --results-dir {results_dir} ({existing} is read-only)", "pass a writable directory"
        )


@dataclass
class _Prepared:
    """An SAE ready to evaluate, and what its results depend on."""

    ref: SAERef
    sae: SAE[Any]
    model_name: str
    hook_name: str
    prepend_bos: bool
    weights_hash: str | None
    outcomes: dict[str, EvalOutcome] = field(default_factory=dict)
    """Eval name -> outcome, in the run's eval order."""
    todo: list[EvalSpec] = field(default_factory=list)
    """Evals whose result must be computed (not reused)."""
    preflight: PreflightReport | None = None


def run(request: RunRequest, model_loader: Callable[[str, str], Any] | None = None) -> list[EvalOutcome]:
    """Evaluate every SAE on every eval; a failing eval is recorded and the others still run and save.

    `model_loader(name, device)` defaults to `tsae_evals.models.load_model`; tests pass a tiny model's.
    """
    from tsae_evals.data import load_documents, make_windows
    from tsae_evals.models import check_device, load_model
    from tsae_evals.saes import check_sae_fits_model, load_sae, resolve_sae, sae_hook_name, split_sae_specs

    for name in ("n_windows", "context_size"):
        if getattr(request, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1", "pass a positive number")
    if request.batch_size is not None and request.batch_size < 1:
        raise UsageError("--batch-size must be at least 1", "pass a positive number")
    specs = parse_eval_names(request.eval_names)
    named = {part.strip() for part in request.eval_names.split(",")}
    configs = build_configs(specs, request.config_overrides)
    sae_specs = split_sae_specs(request.sae_specs)
    if not sae_specs:
        raise UsageError("no SAE given", "pass --sae DIR (a sae-lens directory) or --sae release:sae_id")
    check_device(request.device)
    refs = [resolve_sae(spec) for spec in sae_specs]
    labels = [ref.label for ref in refs]
    clashing = sorted({label for label in labels if labels.count(label) > 1})
    if clashing:
        raise UsageError(
            f"several SAEs would write results under the same name ({', '.join(clashing)})",
            "give the SAE directories distinct names, or evaluate them in separate runs with separate --results-dir",
        )
    check_results_dir(request.results_dir)
    prepared = []
    for ref in refs:
        sae = load_sae(ref, request.device).eval()
        prepend_bos = bool(getattr(sae.cfg.metadata, "prepend_bos", True))
        model_name = request.model or sae.cfg.metadata.model_name or DEFAULT_MODEL
        shape = RunShape(request.n_windows, request.context_size, prepend_bos, model_name, sae.cfg.architecture())
        not_run: dict[str, EvalOutcome] = {}
        for spec in specs:
            try:
                if spec.check is not None:
                    spec.check(shape, configs[spec.name])
            except Unavailable as exc:
                if spec.name in named and not request.named_may_be_unavailable:
                    raise
                not_run[spec.name] = EvalOutcome(ref.label, spec.name, "unavailable", None, message=str(exc))
        prepared.append(
            _Prepared(
                ref=ref,
                sae=sae,
                model_name=model_name,
                hook_name=sae_hook_name(sae),
                prepend_bos=prepend_bos,
                weights_hash=ref.weights_hash(),
                outcomes=not_run,
            )
        )

    documents = load_documents(request.dataset, seed=request.seed)
    for item in prepared:
        for spec in specs:
            unavailable = item.outcomes.pop(spec.name, None)
            if unavailable is not None:  # re-inserted so that outcomes keep the run's eval order
                item.outcomes[spec.name] = unavailable
                continue
            reused = None if request.force else _reusable(item, spec, configs[spec.name], documents.source, request)
            item.outcomes[spec.name] = reused or EvalOutcome(item.ref.label, spec.name, "skipped", None)
            if reused is None:
                item.todo.append(spec)
    # Only SAEs with something left to compute need their model: a finished sweep reruns in seconds.
    pending = [item for item in prepared if item.todo]
    models: dict[str, Any] = {}
    windows: dict[tuple[str, bool], TokenWindows] = {}
    for item in pending:
        if item.model_name not in models:
            models[item.model_name] = (model_loader or load_model)(item.model_name, request.device)
        model = models[item.model_name]
        key = (item.model_name, item.prepend_bos)
        if key not in windows:
            windows[key] = make_windows(
                model.tokenizer,
                documents,
                context_size=request.context_size,
                n_windows=request.n_windows,
                prepend_bos=item.prepend_bos,
            )
        check_sae_fits_model(item.sae, model, item.ref.label)

    for key, group_windows in windows.items():
        group = [item for item in pending if (item.model_name, item.prepend_bos) == key]
        _evaluate_group(models[key[0]], group_windows, group, specs, configs, request)
    return [outcome for item in prepared for outcome in item.outcomes.values()]


def _evaluate_group(
    model: Any,
    windows: TokenWindows,
    items: list[_Prepared],
    specs: list[EvalSpec],
    configs: dict[str, BaseModel],
    request: RunRequest,
) -> None:
    """Evaluate SAEs that share a model and windows: preflight, one shared pass, then the other evals."""
    from tsae_evals.context import EvalContext, default_artifacts_dir

    contexts = [
        EvalContext(
            model=model,
            sae=item.sae,
            sae_ref=item.ref,
            hook_name=item.hook_name,
            windows=windows,
            seed=request.seed,
            device=request.device,
            batch_size=request.effective_batch_size(),
            artifacts_dir=request.artifacts_dir or default_artifacts_dir(),
        )
        for item in items
    ]
    _preflight(model, windows, items, request)
    for item in items:
        if item.preflight is None or not item.preflight.failed or request.allow_degenerate:
            continue
        for spec in item.todo:
            outcome = item.outcomes[spec.name]
            outcome.message = (
                f"preflight failed: {item.preflight.headline()} (pass --allow-degenerate to evaluate anyway)"
            )
        item.todo = []

    scorers: dict[tuple[int, str], BatchScorer] = {}
    for index, item in enumerate(items):
        for spec in item.todo:
            if spec.scorer is None:
                continue
            try:
                scorers[index, spec.name] = spec.scorer(contexts[index], configs[spec.name])
            except Exception as exc:  # a scorer that cannot start fails its eval only
                _fail(item.outcomes[spec.name], exc, request)
    started = time.perf_counter()
    results, errors = _shared_pass(model, windows, items, scorers, request)
    shared_time = time.perf_counter() - started
    by_name = {spec.name: spec for spec in specs}
    for (index, name), error in errors.items():
        _fail(items[index].outcomes[name], error, request)
    for (index, name), result in results.items():
        _save(items[index], by_name[name], configs[name], result, contexts[index], windows, shared_time, request)

    for index, item in enumerate(items):
        for spec in item.todo:
            if spec.scorer is not None:
                continue
            started = time.perf_counter()
            try:
                result = spec.fn(contexts[index], configs[spec.name])
            except Exception as exc:  # any eval, plugins included, may fail; the others still run and save
                _fail(item.outcomes[spec.name], exc, request)
                continue
            elapsed = time.perf_counter() - started
            _save(item, spec, configs[spec.name], result, contexts[index], windows, elapsed, request)


def _reusable(
    item: _Prepared, spec: EvalSpec, config: BaseModel, dataset: str, request: RunRequest
) -> EvalOutcome | None:
    """An outcome standing for an existing result with the same eval version, config, weights and data."""
    from tsae_evals.results import RecordError, read_record, result_path

    path = result_path(request.results_dir, spec.name, item.ref.release, item.ref.sae_id)
    if item.weights_hash is None or not path.is_file():
        return None
    try:
        record = read_record(path)
    except RecordError:
        return None
    if record.provenance is None or record.provenance.reuse_key() != _identity(item, spec, config, dataset, request):
        return None
    return EvalOutcome(
        item.ref.label, spec.name, "reused", record.provenance.preflight, summary=record.headline(), path=path
    )


def _identity(item: _Prepared, spec: EvalSpec, config: BaseModel, dataset: str, request: RunRequest) -> dict[str, Any]:
    """The provenance fields that decide this (SAE, eval)'s numbers (results.REUSE_FIELDS): what a stored result
    must match to be reused, and what a new one records."""
    from tsae_evals.results import config_hash

    return {
        "eval_name": spec.name,
        "eval_version": spec.version,
        "config_hash": config_hash(config),
        "sae_weights_hash": item.weights_hash,
        "model": item.model_name,
        "hook_name": item.hook_name,
        "dataset": dataset,
        "n_windows": request.n_windows,
        "context_size": request.context_size,
        "prepend_bos": item.prepend_bos,
        "seed": request.seed,
    }


def _preflight(model: Any, windows: TokenWindows, items: list[_Prepared], request: RunRequest) -> None:
    """Preflight every SAE on the first windows, from one forward shared by all of them."""
    from tsae_evals.context import run_to_hooks
    from tsae_evals.preflight import run_preflight

    if not items:
        return
    hooks = sorted({item.hook_name for item in items})
    probe = run_to_hooks(model, windows.tokens[:PROBE_WINDOWS], hooks, request.device)
    for item in items:
        item.preflight = run_preflight(item.sae, probe[item.hook_name], windows.first_text_position)
        for outcome in item.outcomes.values():
            if outcome.status == "skipped":
                outcome.preflight = item.preflight


def _shared_pass(
    model: Any,
    windows: TokenWindows,
    items: list[_Prepared],
    scorers: dict[tuple[int, str], BatchScorer],
    request: RunRequest,
) -> tuple[dict[tuple[int, str], EvalResult], dict[tuple[int, str], Exception]]:
    """One model forward per batch for every SAE's hook; each SAE encodes once and feeds all its scorers their
    share. A failing scorer (or SAE) is dropped and its exception returned; the others go on."""
    from tqdm.auto import tqdm

    from tsae_evals.context import EncodedBatch, run_to_hooks

    results: dict[tuple[int, str], EvalResult] = {}
    errors: dict[tuple[int, str], Exception] = {}
    live = dict(scorers)
    wanted = {key: min(scorer.n_windows or windows.n_windows, windows.n_windows) for key, scorer in live.items()}
    fed = dict.fromkeys(live, 0)
    batch_size = request.effective_batch_size()
    starts = range(0, max(wanted.values(), default=0), batch_size)
    progress = tqdm(starts, desc=f"streaming evals, {len(items)} SAE(s)", unit="batch", leave=False, disable=not live)
    try:
        for start in progress:
            hungry = {key for key in live if fed[key] < wanted[key]}
            if not hungry:
                break
            readers = sorted({index for index, _ in hungry})
            activations = run_to_hooks(
                model,
                windows.tokens[start : start + batch_size],
                sorted({items[index].hook_name for index in readers}),
                request.device,
            )
            for index in readers:
                item = items[index]
                keys = sorted(key for key in hungry if key[0] == index)
                try:
                    batch = EncodedBatch.encode(item.sae, activations[item.hook_name])
                except Exception as exc:  # this SAE cannot encode: its evals fail, the other SAEs go on
                    for key in keys:
                        errors[key] = exc
                        del live[key]
                    continue
                for key in keys:
                    remaining = wanted[key] - fed[key]
                    part = batch if batch.latents.shape[0] <= remaining else batch.limited(remaining)
                    try:
                        live[key].add(part)
                    except Exception as exc:  # one eval's failure must not stop the others
                        errors[key] = exc
                        del live[key]
                    else:
                        fed[key] += part.latents.shape[0]
    except Exception as exc:  # the shared forward itself failed: every remaining eval fails with it
        errors.update(dict.fromkeys(live, exc))
        live.clear()
    for key, scorer in live.items():
        try:
            results[key] = scorer.finish()
        except Exception as exc:
            errors[key] = exc
    return results, errors


def _fail(outcome: EvalOutcome, exc: Exception, request: RunRequest) -> None:
    known = isinstance(exc, EvalFailed | UsageError)
    outcome.status, outcome.message = "failed", str(exc) if known else f"{type(exc).__name__}: {exc}"
    if request.verbose:
        traceback.print_exception(exc, file=sys.stderr)


def _save(
    item: _Prepared,
    spec: EvalSpec,
    config: BaseModel,
    result: EvalResult,
    ctx: EvalContext,
    windows: TokenWindows,
    wall_time_s: float,
    request: RunRequest,
) -> None:
    """Write one result (a write that fails fails this eval only, and leaves no partial file), then its plots."""
    from tsae_evals.results import Provenance, build_record, result_path, write_record

    assert item.preflight is not None
    outcome = item.outcomes[spec.name]
    provenance = Provenance(
        **_identity(item, spec, config, windows.source, request),
        device=request.device,
        wall_time_s=round(wall_time_s, 3),
        preflight=item.preflight,
    )
    record = build_record(
        result,
        eval_name=spec.name,
        config=config,
        release=item.ref.release,
        sae_id=item.ref.sae_id,
        sae_cfg=item.sae.cfg.to_dict(),
        provenance=provenance,
    )
    path = result_path(request.results_dir, spec.name, item.ref.release, item.ref.sae_id)
    try:
        write_record(path, record)
    except OSError as exc:
        outcome.status, outcome.message = "failed", f"could not write {path}: {exc.strerror or exc}"
        return
    outcome.status, outcome.path, outcome.summary = "ok", path, result.summary()
    if request.plots and spec.plots is not None:
        try:
            outcome.plots = spec.plots(ctx, config, result, path.with_suffix(""))
        except Exception as exc:  # a picture must never cost the result it illustrates
            outcome.message = f"plots failed: {type(exc).__name__}: {exc}"
