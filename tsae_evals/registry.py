"""Eval registry: evals register by decorating the function that does the work.

Built-in evals are imported on first lookup, so `--help` imports nothing heavy. Third-party packages add evals
by declaring a module in the `tsae_evals.evals` entry-point group; importing that module must run
`@register_eval`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from tsae_evals.errors import UsageError

if TYPE_CHECKING:
    from tsae_evals.context import EncodedBatch, EvalContext

ENTRY_POINT_GROUP = "tsae_evals.evals"
BUILTIN_EVAL_MODULES = (
    "tsae_evals.evals.core.eval",
    "tsae_evals.evals.temporal_stability.eval",
    "tsae_evals.evals.feature_lifetimes.eval",
    "tsae_evals.evals.context_switch.eval",
    "tsae_evals.evals.causal_interventions.eval",
)


class EvalResult(Protocol):
    """What every eval returns: SAE-Bench's three result sections plus a short summary for the table."""

    def metrics_dict(self) -> dict[str, dict[str, Any]]: ...

    def details_list(self) -> list[Any]: ...

    def unstructured(self) -> dict[str, Any]: ...

    def summary(self) -> dict[str, float | int | str | None]: ...


class BatchScorer(Protocol):
    """A streaming eval's state: fed the shared pass's batches, then asked for its result."""

    n_windows: int | None
    """Windows it wants (None: all of the run's)."""

    def add(self, batch: EncodedBatch) -> None: ...

    def finish(self) -> EvalResult: ...


ConfigT = TypeVar("ConfigT", bound=BaseModel)
EvalFn = Callable[["EvalContext", Any], EvalResult]
PlotFn = Callable[["EvalContext", Any, Any, Any], list[Any]]
"""`plots(ctx, cfg, result, stem) -> written paths`: PNGs named `<stem>_<what>.png` beside the result JSON."""


@dataclass(frozen=True)
class EvalSpec:
    """A registered eval: its identity, its typed config and the function that runs it."""

    name: str
    version: int
    description: str
    config_cls: type[BaseModel]
    fn: EvalFn
    group: str | None
    plots: PlotFn | None = None
    scorer: Callable[[EvalContext, Any], BatchScorer] | None = None
    """Streaming evals: builds the scorer the runner feeds from one pass shared with the other streaming evals."""


_REGISTRY: dict[str, EvalSpec] = {}
_loaded = False


def register_eval(
    name: str, *, version: int, config: type[ConfigT], group: str | None = None, plots: PlotFn | None = None
) -> Callable[[Callable[[EvalContext, ConfigT], EvalResult]], Callable[[EvalContext, ConfigT], EvalResult]]:
    """Register `fn(ctx, cfg) -> result` under `name`; the first docstring line is its description.

    `group` lets `--evals temporal` select every eval of that group at once; `plots` draws its pictures
    (`run --plots`).
    """

    def decorate(fn: Callable[[EvalContext, ConfigT], EvalResult]) -> Callable[[EvalContext, ConfigT], EvalResult]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"eval {name!r} is already registered by {existing.fn.__module__}")
        description = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        _REGISTRY[name] = EvalSpec(
            name=name, version=version, description=description, config_cls=config, fn=fn, group=group, plots=plots
        )
        return fn

    return decorate


def register_streaming_eval(
    name: str, *, version: int, config: type[ConfigT], group: str | None = None, plots: PlotFn | None = None
) -> Callable[[Callable[[EvalContext, ConfigT], BatchScorer]], Callable[[EvalContext, ConfigT], BatchScorer]]:
    """Register a streaming eval by its scorer factory `(ctx, cfg) -> BatchScorer`.

    `run` feeds every streaming eval of an SAE from one model forward and one SAE pass per batch; run alone,
    the eval makes that pass itself.
    """

    def decorate(
        factory: Callable[[EvalContext, ConfigT], BatchScorer],
    ) -> Callable[[EvalContext, ConfigT], BatchScorer]:
        def run_alone(ctx: EvalContext, cfg: ConfigT) -> EvalResult:
            scorer = factory(ctx, cfg)
            for batch in ctx.encoded_batches(scorer.n_windows):
                scorer.add(batch)
            return scorer.finish()

        run_alone.__doc__, run_alone.__qualname__ = factory.__doc__, factory.__qualname__
        register_eval(name, version=version, config=config, group=group, plots=plots)(run_alone)
        _REGISTRY[name] = replace(_REGISTRY[name], scorer=factory)
        return factory

    return decorate


def feed_shared_pass(
    ctx: EvalContext, scorers: dict[str, BatchScorer]
) -> tuple[dict[str, EvalResult], dict[str, Exception]]:
    """One pass over the run's windows feeding every scorer its share; a failing scorer is dropped and its
    exception returned, the others go on."""
    results: dict[str, EvalResult] = {}
    errors: dict[str, Exception] = {}
    live = dict(scorers)
    wanted = {name: scorer.n_windows or ctx.windows.n_windows for name, scorer in live.items()}
    fed = dict.fromkeys(live, 0)
    if live:
        try:
            for batch in ctx.encoded_batches(max(wanted.values())):
                for name in list(live):
                    remaining = wanted[name] - fed[name]
                    if remaining <= 0:
                        continue
                    part = batch if batch.latents.shape[0] <= remaining else batch.limited(remaining)
                    try:
                        live[name].add(part)
                    except Exception as exc:  # one eval's failure must not stop the others
                        errors[name] = exc
                        del live[name]
                    else:
                        fed[name] += part.latents.shape[0]
        except Exception as exc:  # the shared forward itself failed: every remaining eval fails with it
            errors.update(dict.fromkeys(live, exc))
            live.clear()
    for name, scorer in live.items():
        try:
            results[name] = scorer.finish()
        except Exception as exc:
            errors[name] = exc
    return results, errors


def _load_registered_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_EVAL_MODULES:
        importlib.import_module(module)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as exc:  # a broken plugin must not take the built-in evals down with it
            raise UsageError(
                f"the eval plugin {entry_point.name!r} ({entry_point.value}) failed to import: {exc}",
                f"fix or uninstall the package that declares it in the {ENTRY_POINT_GROUP!r} entry points",
            ) from exc


def all_evals() -> list[EvalSpec]:
    _load_registered_modules()
    return sorted(_REGISTRY.values(), key=lambda spec: spec.name)


def get_eval(name: str) -> EvalSpec:
    _load_registered_modules()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `python -m tsae_evals list` to see them"
    raise UsageError(f"unknown eval {name!r}", hint)


def parse_eval_names(spec: str) -> list[EvalSpec]:
    """Turn `core,temporal_stability` into registered evals, rejecting every unknown name before any work."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise UsageError("no eval named in --evals", "pass e.g. --evals core,temporal_stability")
    selected: dict[str, EvalSpec] = {}
    for name in names:
        group = [s for s in all_evals() if s.group == name and name not in _REGISTRY]
        for spec_ in group or [get_eval(name)]:
            selected[spec_.name] = spec_
    return list(selected.values())
