"""Results: what evals return, and the one record per (SAE, eval) that the runner writes and every reader reads.

Each metric declares its label, its direction and whether it is a headline column where it is defined
(`metric(...)` on the result's field), and every record carries those declarations (`metric_info`), so tables,
comparisons and regression checks read any eval's file without per-eval code. The record keeps SAE-Bench's
schema (its own output models validate our files) plus our provenance block. NaN stays NaN (SAE-Bench turns it
into -1, which reads as a real score). Nothing here imports torch: the report layer reads records only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
import uuid
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import tsae_evals
from tsae_evals.preflight import PreflightReport

RECORD_SCHEMA_VERSION = 3
"""Layout of the whole record. 1: `schema_version` inside `provenance`, no `metric_info`, no weights hash.
2: no `interval` in `metric_info` (a reader of schema 2 refuses the field, so records that may carry it are 3)."""
REUSE_FIELDS = {
    "eval_name",
    "eval_version",
    "config_hash",
    "sae_weights_hash",
    "model",
    "hook_name",
    "dataset",
    "n_windows",
    "context_size",
    "prepend_bos",
    "seed",
}
"""Provenance fields that decide a result's numbers: a stored result is reused only when all of them match."""
TRACKED_PACKAGES = ("torch", "transformer-lens", "sae-lens", "sae-bench", "transformers", "numpy", "datasets")


# --- what evals return ---------------------------------------------------------------------------------------


class MetricInfo(BaseModel):
    """How a metric is shown and compared, declared where the metric is defined."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    label: str
    """Column name in tables (short, unique within the eval)."""
    higher_is_better: bool | None
    """Direction: True or False; None for counts and settings that have no better side."""
    headline: bool = False
    """Shown in the run summary and as a leaderboard column."""
    description: str = ""
    """One line on what it measures (the field's docstring)."""
    interval: tuple[str, str] | None = None
    """Keys of the record metrics holding this metric's 95% interval bounds, lower then upper (the coverage is the
    eval config's `confidence` where it has one); None: the eval reports no interval for it."""


def direction_arrow(higher_is_better: bool | None) -> str:
    """ "↑", "↓", or "" for a metric with no better side: how every table marks a declared direction."""
    return "" if higher_is_better is None else "↑" if higher_is_better else "↓"


def direction_word(higher_is_better: bool | None) -> str:
    """ "higher", "lower", or "" for a metric with no better side: the same, spelled out for CSV and HTML."""
    return "" if higher_is_better is None else "higher" if higher_is_better else "lower"


def metric(
    *,
    label: str,
    higher_is_better: bool | None,
    headline: bool = False,
    interval: tuple[str, str] | None = None,
    default: Any = ...,
) -> Any:
    """Declare a result field as a metric: `jaccard: float = metric(label="jaccard", higher_is_better=True)`.
    `interval` names the fields of the same category holding its interval bounds, lower then upper."""
    declared: dict[str, Any] = {"label": label, "higher_is_better": higher_is_better, "headline": headline}
    if interval is not None:
        declared["interval"] = list(interval)  # JSON-safe: json_schema_extra may end up in a JSON schema
    return Field(default, json_schema_extra={"metric": declared})


def _declared(field: Any) -> dict[str, Any] | None:
    extra = field.json_schema_extra
    return extra.get("metric") if isinstance(extra, dict) else None


def category_metric_info(category_name: str, category_cls: type[BaseModel]) -> dict[str, MetricInfo]:
    """`category.metric` -> declaration for the declared fields of one category class (no instance needed), with
    interval bounds resolved to full keys. A ValueError when a declared bound is not a field of the category: a
    typo there would silently drop the interval from every comparison."""
    fields = category_cls.model_fields
    found: dict[str, MetricInfo] = {}
    for name, field in fields.items():
        declared = _declared(field)
        if declared is None:
            continue
        declared = dict(declared)
        bounds = declared.pop("interval", None)
        interval = None
        if bounds is not None:
            missing = [str(bound) for bound in bounds if bound not in fields]
            if len(bounds) != 2 or missing:
                problem = f"it has no field {', '.join(missing)}" if missing else "that is not a (lower, upper) pair"
                raise ValueError(
                    f"{category_cls.__name__}.{name} declares interval={tuple(bounds)!r}, but {problem}; "
                    f"name two fields of the same category ({', '.join(fields)})"
                )
            interval = (f"{category_name}.{bounds[0]}", f"{category_name}.{bounds[1]}")
        found[f"{category_name}.{name}"] = MetricInfo(
            **declared, interval=interval, description=field.description or ""
        )
    return found


class MetricCategory(BaseModel):
    """One SAE-Bench metric category: flat scalar fields, each documented by a docstring."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class EvalResult(BaseModel):
    """Base of every eval's result: `metrics` holds SAE-Bench categories (a model whose fields are categories)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    metrics: Any
    """SAE-Bench metric categories; subclasses narrow the type."""

    def metrics_dict(self) -> dict[str, dict[str, Any]]:
        """SAE-Bench's `eval_result_metrics`: category -> metric -> scalar (absent optional categories left out)."""
        return {name: values for name, values in self.metrics.model_dump().items() if values is not None}

    def details_list(self) -> list[Any]:
        """SAE-Bench's `eval_result_details`."""
        return []

    def unstructured(self) -> dict[str, Any]:
        """SAE-Bench's `eval_result_unstructured`."""
        return {}

    def recorded_config(self, config: BaseModel) -> dict[str, Any]:
        """The record's `eval_config`: the eval's config as it ran."""
        return config.model_dump(mode="json")

    def metric_info(self) -> dict[str, MetricInfo]:
        """`category.metric` -> declaration, for every declared metric in `metrics_dict()`; a ValueError names a
        declared interval bound that is not a field of its category."""
        found: dict[str, MetricInfo] = {}
        metrics = self.metrics
        for category_name in type(metrics).model_fields:
            category = getattr(metrics, category_name)
            if isinstance(category, BaseModel):
                found.update(category_metric_info(category_name, type(category)))
        return found

    def summary(self) -> dict[str, Any]:
        """Headline metrics by label, in declaration order: the run's printed table."""
        values = flatten_metrics(self.metrics_dict())
        return {info.label: values.get(key) for key, info in self.metric_info().items() if info.headline}


def flatten_metrics(metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`{category: {metric: v}}` -> `{"category.metric": v}`."""
    return {f"{category}.{name}": value for category, values in metrics.items() for name, value in values.items()}


# --- provenance ----------------------------------------------------------------------------------------------


@cache
def installed_versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@cache
def git_state() -> tuple[str | None, bool | None]:
    root = Path(tsae_evals.__file__).resolve().parent.parent
    # Only our own checkout: a user's repository that happens to contain an installed copy is not ours to report.
    if not (root / ".git").exists():
        return None, None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    revision = git("rev-parse", "HEAD")
    if revision is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return revision, (bool(status) if status is not None else None)


class Provenance(BaseModel):
    """How a result was produced: enough to rerun it and to know whether two results are comparable."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    tsae_evals_version: str = Field(default_factory=lambda: tsae_evals.__version__)
    """Version of tsae_evals."""
    eval_name: str
    """Registered eval name."""
    eval_version: int
    """Registered eval version; results of different versions are not comparable."""
    config_hash: str
    """SHA-256 (first 16 hex digits) of the eval config as JSON with sorted keys."""
    sae_weights_hash: str | None = None
    """SHA-256 (first 16 hex digits) of the SAE's weights file (None for a pretrained SAE not on disk)."""
    git_revision: str | None = Field(default_factory=lambda: git_state()[0])
    """Commit of the tsae_evals checkout, if it is one."""
    git_dirty: bool | None = Field(default_factory=lambda: git_state()[1])
    """Whether that checkout had uncommitted changes."""
    model: str
    """The `--model` the activations came from."""
    hook_name: str
    """Model hook the SAE reads."""
    dataset: str
    """The `--dataset` the token windows were cut from."""
    n_windows: int
    """Token windows available to the eval."""
    context_size: int
    """Tokens per window, BOS included."""
    prepend_bos: bool
    """Whether each window starts with BOS."""
    seed: int
    """Run seed."""
    device: str
    """Torch device."""
    package_versions: dict[str, str] = Field(default_factory=installed_versions)
    """Versions of the packages that decide the numbers."""
    python_version: str = Field(default_factory=platform.python_version)
    """Python version."""
    wall_time_s: float
    """Seconds the eval itself took (for evals fed by a shared pass: that whole pass)."""
    preflight: PreflightReport
    """Preflight checks of this SAE; a `fail` here means the metrics are not meaningful."""

    def reuse_key(self) -> dict[str, Any]:
        """What must match for an existing result to stand for a new one (wall time, device, git state aside)."""
        return self.model_dump(include=REUSE_FIELDS)


def config_hash(config: BaseModel) -> str:
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# --- the record ----------------------------------------------------------------------------------------------


class EvalRecord(BaseModel):
    """One result file: SAE-Bench's `BaseEvalOutput` fields, then ours (`schema_version`, `metric_info`,
    `provenance`). The writer and every reader use this model."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    eval_type_id: str
    """The eval's registered name."""
    eval_config: dict[str, Any]
    """The eval's config as it ran."""
    eval_id: str
    """Unique id of this result."""
    datetime_epoch_millis: int
    """When it was written."""
    eval_result_metrics: dict[str, dict[str, Any]]
    """Metric categories of flat scalars (SAE-Bench's layout)."""
    eval_result_details: list[Any] = Field(default_factory=list)
    """Per-item rows (per latent, per lag, ...)."""
    sae_bench_commit_hash: str = ""
    """SAE-Bench's field; we record the installed sae-bench version (no git call on anyone's repository)."""
    sae_lens_id: str
    """SAE id (a directory's name for local SAEs)."""
    sae_lens_release_id: str
    """SAE release (`local` for a directory)."""
    sae_lens_version: str = ""
    """Installed sae-lens version."""
    sae_cfg_dict: dict[str, Any] = Field(default_factory=dict)
    """The SAE's config."""
    eval_result_unstructured: Any = None
    """Anything else the eval keeps."""
    schema_version: int = RECORD_SCHEMA_VERSION
    """Layout of this record (RECORD_SCHEMA_VERSION)."""
    metric_info: dict[str, MetricInfo] = Field(default_factory=dict)
    """`category.metric` -> label, direction, headline: how readers show and compare each metric."""
    provenance: Provenance | None = None
    """How it was produced; absent in files SAE-Bench wrote itself."""

    def metrics(self) -> dict[str, Any]:
        """Flat `category.metric` -> value."""
        return flatten_metrics(self.eval_result_metrics)

    def headline(self) -> dict[str, Any]:
        """Headline metrics by label."""
        values = self.metrics()
        return {info.label: values.get(key) for key, info in self.metric_info.items() if info.headline}


def build_record(
    result: EvalResult,
    *,
    eval_name: str,
    config: BaseModel,
    release: str,
    sae_id: str,
    sae_cfg: dict[str, Any],
    provenance: Provenance,
) -> EvalRecord:
    return EvalRecord(
        eval_type_id=eval_name,
        eval_config=result.recorded_config(config),
        eval_id=str(uuid.uuid4()),
        datetime_epoch_millis=int(time.time() * 1000),
        eval_result_metrics=result.metrics_dict(),
        eval_result_details=result.details_list(),
        sae_bench_commit_hash=f"sae-bench=={installed_versions()['sae-bench']}",
        sae_lens_id=sae_id,
        sae_lens_release_id=release,
        sae_lens_version=installed_versions()["sae-lens"],
        sae_cfg_dict=sae_cfg,
        eval_result_unstructured=result.unstructured(),
        metric_info=result.metric_info(),
        provenance=provenance,
    )


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring an older record's dict to the current layout (files are never rewritten in place)."""
    raw = dict(raw)
    if "schema_version" not in raw:
        provenance = raw.get("provenance")
        if isinstance(provenance, dict):  # version 1: ours, versioned inside provenance
            provenance = dict(provenance)
            raw["schema_version"] = int(provenance.pop("schema_version", 1))
            raw["provenance"] = provenance
        else:  # written by SAE-Bench itself: no provenance, no metric declarations
            raw["schema_version"] = RECORD_SCHEMA_VERSION
    if raw["schema_version"] < 2:
        raw["metric_info"] = raw.get("metric_info") or {}
        raw["schema_version"] = 2
    if raw["schema_version"] < 3:  # declarations gained an optional `interval`: nothing to convert
        raw["schema_version"] = 3
    return raw


class RecordError(ValueError):
    """A results file that is not a readable record."""


def read_record(path: Path) -> EvalRecord:
    """Read any record version (and SAE-Bench's own files); RecordError names the file and the problem."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise RecordError(f"{path}: not a result record (top level is {type(raw).__name__})")
    if raw.get("schema_version", 0) > RECORD_SCHEMA_VERSION:
        raise RecordError(f"{path}: written by a newer tsae_evals (schema {raw['schema_version']})")
    try:
        return EvalRecord.model_validate(migrate(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RecordError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def result_path(results_dir: Path, eval_name: str, release: str, sae_id: str) -> Path:
    """SAE-Bench's file naming, `{release}_{id}_eval_results.json`, inside a folder per eval."""
    name = f"{release}_{sae_id}_eval_results.json".replace("/", "_")
    return results_dir / eval_name / name


def write_record(path: Path, record: EvalRecord) -> None:
    write_json_atomic(path, record.model_dump(mode="python"))


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file. The file
    gets the permissions a plain `open` would give (mkstemp's 0600 would hide it from teammates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=2, allow_nan=True, default=str)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
