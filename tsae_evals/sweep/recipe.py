"""A sweep recipe (YAML): architectures with their options, token budgets and seeds, trained on one activation
cache, evaluated together and compared with a control. `load_recipe` validates all of it before anything runs."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tsae_evals.data.documents import DEFAULT_DATASET
from tsae_evals.errors import UsageError, unknown_name
from tsae_evals.models import DEFAULT_MODEL

TRAIN_FIELDS = (
    "tokens",
    "expansion",
    "l1_coefficient",
    "k",
    "lr",
    "batch_size_tokens",
    "context_size",
    "max_windows_per_document",
    "activations",
)
"""TrainRequest fields a recipe may set (in `train`, per variant, or as grid keys); other grid keys are `--set`
options of the variant's architecture."""


class VariantSpec(BaseModel):
    """One architecture and its settings; a `grid` expands it into one variant per combination."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.=,+-]+$")
    """Row label and directory name (letters, digits and _ . = , + -)."""
    arch: str
    """A `train --arch` name (python -m tsae_evals list --archs)."""
    set: dict[str, Any] = Field(default_factory=dict)
    """The architecture's options (`--set name=value`); a value `@NAME` is the SAE of the earlier variant NAME
    trained with the same seed (e.g. the temporal LSTM's `init_from`)."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Training settings for this variant only (see TRAIN_FIELDS)."""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Each key takes each of its values (training settings or options); names get `[key=value,...]`."""
    control: str | None = None
    """Variant whose rows this one is compared with; None: the recipe's `control`."""


class RunSpec(BaseModel):
    """How the evals run (the `run` command's settings)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    n_windows: int = Field(default=64, ge=1)
    """Evaluation windows."""
    batch_size: int | None = Field(default=None, ge=1)
    """Windows per forward; None: run's default for the device."""
    config: list[str] = Field(default_factory=list)
    """`eval.field=value` overrides."""
    allow_degenerate: bool = False
    """Evaluate SAEs that fail preflight anyway (tiny test SAEs)."""
    plots: bool = False
    """Draw each eval's pictures beside its result files (`run --plots`)."""


class Recipe(BaseModel):
    """A whole sweep."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """The sweep's name: its default output directory is sweeps/<name>."""
    description: str = ""
    """What the sweep asks, in a sentence or two; printed above the table."""
    gpu_note: str = ""
    """The sizes a user with a GPU should use instead (the recipe is sized for CPU minutes)."""
    model: str = DEFAULT_MODEL
    """Model whose activations every variant reads."""
    layer: int = Field(default=6, ge=0)
    """Residual stream layer (blocks.LAYER.hook_resid_post)."""
    dataset: str = DEFAULT_DATASET
    """Text source."""
    data_seed: int = 0
    """Seed of the document order: fixed across `seeds`, so every variant and seed trains on the same tokens
    (one activation cache) and the seed spread is that of initialisation and batch order."""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    """Seeds of initialisation and batch order; each variant is trained once per seed."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Training settings of every variant (see TRAIN_FIELDS); `tokens` is required here or per variant."""
    control: str
    """Name of the variant every other one is compared with (paired by seed)."""
    variants: list[VariantSpec] = Field(min_length=1)
    """What to train."""
    evals: list[str] = Field(default_factory=lambda: ["core", "temporal"], min_length=1)
    """Evals or groups to run on every trained SAE."""
    run: RunSpec = Field(default_factory=RunSpec)
    """Evaluation settings."""
    metrics: list[str] = Field(default_factory=list)
    """Table columns as `eval.label` (labels as `run` prints them); empty: every headline metric."""
    publish: str | None = None
    """A Markdown file (relative to the recipe) holding `<!-- sweep:NAME -->` ... `<!-- /sweep:NAME -->`: the
    table replaces what lies between, whenever the recipe runs as written (no --tokens, no --only)."""

    @model_validator(mode="after")
    def _names_resolve(self) -> Recipe:
        names = [variant.name for variant in self.variants]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique, repeated: {duplicates}")
        for reference in [self.control, *(v.control for v in self.variants if v.control)]:
            if reference not in names:
                raise ValueError(f"control {reference!r} is not a variant (variants: {names})")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        return self


def referenced_variant(value: Any) -> str | None:
    """NAME when an option value is a variant reference `@NAME`, else None."""
    return value[1:] if isinstance(value, str) and value.startswith("@") else None


@dataclass(frozen=True)
class Variant:
    """One trained configuration of a sweep (a grid point of a VariantSpec)."""

    name: str
    arch: str
    options: dict[str, Any]
    train: dict[str, Any]
    control: str

    def settings_hash(self, recipe: Recipe, seed: int) -> str:
        """Everything that decides the trained SAE: a changed setting means retraining, an unchanged one reuse."""
        payload = {
            "arch": self.arch,
            "options": self.options,
            "train": self.train,
            "model": recipe.model,
            "layer": recipe.layer,
            "dataset": recipe.dataset,
            "data_seed": recipe.data_seed,
            "seed": seed,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def expand(recipe: Recipe) -> list[Variant]:
    """Every variant, grids expanded; each control resolves to a variant name (a grid control's first point)."""
    expanded: list[Variant] = []
    first_point: dict[str, str] = {}
    for spec in recipe.variants:
        keys = list(spec.grid)
        for values in itertools.product(*(spec.grid[key] for key in keys)) if keys else [()]:
            point = dict(zip(keys, values, strict=True))
            name = spec.name + (f"[{','.join(f'{k}={v}' for k, v in point.items())}]" if point else "")
            train = {**recipe.train, **spec.train, **{k: v for k, v in point.items() if k in TRAIN_FIELDS}}
            options = {**spec.set, **{k: v for k, v in point.items() if k not in TRAIN_FIELDS}}
            expanded.append(Variant(name, spec.arch, options, train, spec.control or recipe.control))
            first_point.setdefault(spec.name, name)
    return [dataclasses.replace(v, control=first_point[v.control]) for v in expanded]


def load_recipe(path: Path) -> Recipe:
    """The recipe at `path`, validated (names, architectures, options, training settings, evals), or a UsageError."""
    import yaml

    if not path.is_file():
        raise UsageError(f"recipe {path} does not exist", "pass a YAML recipe, e.g. recipes/all_architectures.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0]
        raise UsageError(f"recipe {path} is not valid YAML: {first_line}", "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise UsageError(f"recipe {path} is not a mapping", "see recipes/ for the layout")
    try:
        recipe = Recipe(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "recipe"
        raise UsageError(f"invalid recipe {path}: {where}: {first['msg']}", "see recipes/ for the layout") from None
    check_recipe(recipe, where=str(path))
    if recipe.publish is not None:
        publish_target(recipe, path)
    return recipe


def publish_target(recipe: Recipe, recipe_path: Path) -> Path:
    """The file the recipe's table goes into, checked to hold the recipe's markers."""
    from tsae_evals.sweep.table import published_block

    target = (recipe_path.parent / str(recipe.publish)).resolve()
    if not target.is_file():
        raise UsageError(f"recipe {recipe_path}: publish file {target} does not exist", "fix `publish` or drop it")
    published_block(target.read_text(encoding="utf-8"), recipe.name, where=str(target))
    return target


def check_recipe(recipe: Recipe, where: str) -> None:
    """What pydantic cannot see: architectures exist, settings are training settings, options validate, every
    variant has a token budget and `@NAME` references name earlier variants."""
    from tsae_evals.training import training_architectures
    from tsae_evals.training.options import parse_options

    architectures = training_architectures()
    trained_before: set[str] = set()
    for variant in expand(recipe):
        if variant.arch not in architectures:
            raise unknown_name(
                "architecture",
                variant.arch,
                architectures,
                "see python -m tsae_evals list --archs",
                where=f" in variant {variant.name!r} of {where}",
            )
        unknown = sorted(set(variant.train) - set(TRAIN_FIELDS))
        if unknown:
            raise UsageError(
                f"variant {variant.name!r} of {where}: unknown training settings {unknown}",
                f"training settings are {', '.join(TRAIN_FIELDS)}; architecture options go under `set`",
            )
        if "tokens" not in variant.train:
            raise UsageError(f"variant {variant.name!r} of {where} has no token budget", "set train.tokens")
        for key, value in variant.options.items():
            reference = referenced_variant(value)
            if reference is not None and reference not in trained_before:
                raise UsageError(
                    f"variant {variant.name!r} of {where}: {key}={value} names no earlier variant",
                    f"'@NAME' refers to a variant listed before this one (earlier: {sorted(trained_before)})",
                )
        # A variant reference stands for a directory that does not exist yet: check the other options only.
        parse_options(
            architectures[variant.arch],
            tuple(
                f"{key}={json.dumps(value)}"
                for key, value in variant.options.items()
                if referenced_variant(value) is None
            ),
        )
        trained_before.add(variant.name)
