"""Result files: SAE-Bench's schema plus our provenance block, one JSON per (SAE, eval), written atomically.

SAE-Bench's graphing and Neuronpedia tools read the SAE-Bench fields; the `provenance` block says how to
reproduce the number. NaN stays NaN (SAE-Bench turns it into -1, which reads as a real score).
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

from pydantic import BaseModel, ConfigDict, Field

import tsae_evals
from tsae_evals.preflight import PreflightReport

RESULTS_SCHEMA_VERSION = 1
TRACKED_PACKAGES = ("torch", "transformer-lens", "sae-lens", "sae-bench", "transformers", "numpy", "datasets")


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

    schema_version: int = RESULTS_SCHEMA_VERSION
    """Version of this provenance block's layout."""
    tsae_evals_version: str = Field(default_factory=lambda: tsae_evals.__version__)
    """Version of tsae_evals."""
    eval_name: str
    """Registered eval name."""
    eval_version: int
    """Registered eval version; results of different versions are not comparable."""
    config_hash: str
    """SHA-256 (first 16 hex digits) of the eval config as JSON with sorted keys."""
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
    """Seconds the eval itself took."""
    preflight: PreflightReport
    """Preflight checks of this SAE; a `fail` here means the metrics are not meaningful."""


def config_hash(config: BaseModel) -> str:
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def result_path(results_dir: Path, eval_name: str, release: str, sae_id: str) -> Path:
    """SAE-Bench's file naming, `{release}_{id}_eval_results.json`, inside a folder per eval."""
    name = f"{release}_{sae_id}_eval_results.json".replace("/", "_")
    return results_dir / eval_name / name


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=2, allow_nan=True, default=str)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build_record(
    *,
    eval_name: str,
    config: BaseModel,
    metrics: dict[str, dict[str, Any]],
    details: list[Any],
    unstructured: dict[str, Any],
    release: str,
    sae_id: str,
    sae_cfg: dict[str, Any],
    provenance: Provenance,
) -> dict[str, Any]:
    """One result in SAE-Bench's `BaseEvalOutput` layout, with `provenance` beside its fields."""
    return {
        "eval_type_id": eval_name,
        "eval_config": config.model_dump(mode="json"),
        "eval_id": str(uuid.uuid4()),
        "datetime_epoch_millis": int(time.time() * 1000),
        "eval_result_metrics": metrics,
        "eval_result_details": details,
        "sae_bench_commit_hash": f"sae-bench=={installed_versions()['sae-bench']}",
        "sae_lens_id": sae_id,
        "sae_lens_release_id": release,
        "sae_lens_version": installed_versions()["sae-lens"],
        "sae_cfg_dict": sae_cfg,
        "eval_result_unstructured": unstructured,
        "provenance": provenance.model_dump(mode="json"),
    }
