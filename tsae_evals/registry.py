"""Eval registry: evals register by decorating the function that does the work.

Built-in evals are imported on first lookup, so `--help` imports nothing heavy. Third-party packages add evals
by declaring a module in the `tsae_evals.evals` entry-point group; importing that module must run
`@register_eval`. A name is registered once: a second registration under a taken name (a plugin reusing a
built-in's name included) is an error, never a silent replacement.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from tsae_evals.errors import UsageError, unknown_name

if TYPE_CHECKING:
    from tsae_evals.context import EncodedBatch, EvalContext, RunShape
    from tsae_evals.results import EvalResult

ENTRY_POINT_GROUP = "tsae_evals.evals"
BUILTIN_EVAL_MODULES = (
    "tsae_evals.evals.saebench.core.eval",
    "tsae_evals.evals.saebench.sparse_probing.eval",
    "tsae_evals.evals.saebench.sparse_probing_sae_probes.eval",
    "tsae_evals.evals.saebench.scr_and_tpp.eval",
    "tsae_evals.evals.saebench.absorption.eval",
    "tsae_evals.evals.saebench.unlearning.eval",
    "tsae_evals.evals.saebench.autointerp.eval",
    "tsae_evals.evals.temporal_stability.eval",
    "tsae_evals.evals.feature_lifetimes.eval",
    "tsae_evals.evals.context_switch.eval",
    "tsae_evals.evals.causal_interventions.eval",
    "tsae_evals.evals.hierarchy.eval",
    "tsae_evals.evals.lifecycle.eval",
    "tsae_evals.evals.position_invariance.eval",
    "tsae_evals.evals.feature_redundancy.eval",
    "tsae_evals.evals.topic_unlearning.eval",
    "tsae_evals.evals.agreement.eval",
    "tsae_evals.evals.disambiguation.eval",
    "tsae_evals.evals.coreference.eval",
)


class BatchScorer(Protocol):
    """A streaming eval's state: fed the shared pass's batches, then asked for its result."""

    n_windows: int | None
    """Windows it wants (None: all of the run's)."""

    def add(self, batch: EncodedBatch) -> None: ...

    def finish(self) -> EvalResult: ...


ConfigT = TypeVar("ConfigT", bound=BaseModel)
EvalFn = Callable[["EvalContext", Any], "EvalResult"]
PlotFn = Callable[["EvalContext", Any, Any, Any], list[Any]]
"""`plots(ctx, cfg, result, stem) -> written paths`: PNGs named `<stem>_<what>.png` beside the result JSON."""
CheckFn = Callable[["RunShape", Any], object]
"""`check(shape, cfg)` raises UsageError when the config cannot run on windows of that shape (its return value is unused)."""


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
    check: CheckFn | None = None
    scorer: Callable[[EvalContext, Any], BatchScorer] | None = None
    """Streaming evals: builds the scorer the runner feeds from one pass shared with the other streaming evals."""

    @property
    def origin(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"


_REGISTRY: dict[str, EvalSpec] = {}
_loaded = False


def _add(spec: EvalSpec) -> None:
    existing = _REGISTRY.get(spec.name)
    # The same function registering again is a module being re-imported, not a clash.
    if existing is not None and existing.origin != spec.origin:
        raise ValueError(
            f"eval {spec.name!r} is already registered by {existing.origin}; {spec.origin} cannot reuse it"
        )
    _REGISTRY[spec.name] = spec


def _description(fn: Callable[..., Any], name: str) -> str:
    return (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name


def register_eval(
    name: str,
    *,
    version: int,
    config: type[ConfigT],
    group: str | None = None,
    plots: PlotFn | None = None,
    check: Callable[[RunShape, ConfigT], object] | None = None,
) -> Callable[[Callable[[EvalContext, ConfigT], EvalResult]], Callable[[EvalContext, ConfigT], EvalResult]]:
    """Register `fn(ctx, cfg) -> result` under `name`; the first docstring line is its description.

    `group` lets `--evals temporal` select every eval of that group at once; `plots` draws its pictures
    (`run --plots`); `check(shape, cfg)` refuses, before any model loads, a config the run's windows cannot serve.
    """

    def decorate(fn: Callable[[EvalContext, ConfigT], EvalResult]) -> Callable[[EvalContext, ConfigT], EvalResult]:
        _add(EvalSpec(name, version, _description(fn, name), config, fn, group, plots, check))
        return fn

    return decorate


def register_streaming_eval(
    name: str,
    *,
    version: int,
    config: type[ConfigT],
    group: str | None = None,
    plots: PlotFn | None = None,
    check: Callable[[RunShape, ConfigT], object] | None = None,
) -> Callable[[Callable[[EvalContext, ConfigT], BatchScorer]], Callable[[EvalContext, ConfigT], BatchScorer]]:
    """Register a streaming eval by its scorer factory `(ctx, cfg) -> BatchScorer`.

    `run` feeds every streaming eval of every SAE from one model forward per batch (and one SAE pass per SAE);
    called alone, the eval makes that pass itself.
    """

    def decorate(
        factory: Callable[[EvalContext, ConfigT], BatchScorer],
    ) -> Callable[[EvalContext, ConfigT], BatchScorer]:
        def run_alone(ctx: EvalContext, cfg: ConfigT) -> EvalResult:
            scorer = factory(ctx, cfg)
            for batch in ctx.encoded_batches(scorer.n_windows):
                scorer.add(batch)
            return scorer.finish()

        run_alone.__module__, run_alone.__qualname__ = factory.__module__, factory.__qualname__
        _add(EvalSpec(name, version, _description(factory, name), config, run_alone, group, plots, check, factory))
        return factory

    return decorate


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
        except Exception as exc:  # a broken or clashing plugin is the user's to fix; say which one
            raise UsageError(
                f"the eval plugin {entry_point.name!r} ({entry_point.value}) failed to load: {exc}",
                f"fix, rename or uninstall the package that declares it in the {ENTRY_POINT_GROUP!r} entry points",
            ) from exc


def all_evals() -> list[EvalSpec]:
    _load_registered_modules()
    return sorted(_REGISTRY.values(), key=lambda spec: spec.name)


def groups() -> dict[str, list[str]]:
    """Group name -> its evals."""
    found: dict[str, list[str]] = {}
    for spec in all_evals():
        if spec.group:
            found.setdefault(spec.group, []).append(spec.name)
    return found


def get_eval(name: str) -> EvalSpec:
    _load_registered_modules()
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise unknown_name("eval", name, [*_REGISTRY, *groups()], "run `python -m tsae_evals list` to see them")


def parse_eval_names(spec: str) -> list[EvalSpec]:
    """Turn `core,temporal_stability` into registered evals, rejecting every unknown name before any work."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise UsageError("no eval named in --evals", "pass e.g. --evals core,temporal_stability")
    selected: dict[str, EvalSpec] = {}
    members = groups()
    for name in names:
        for eval_name in members.get(name, []) if name not in _REGISTRY else [name]:
            selected[eval_name] = _REGISTRY[eval_name]
        if name not in _REGISTRY and name not in members:
            get_eval(name)
    return list(selected.values())
