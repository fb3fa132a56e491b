"""What every SAE-Bench adapter shares: its side effects contained, our SAE in the shape it expects, one artifacts
folder per (eval, model, hook, data), and its own output model turned into our result.

SAE-Bench's metric code runs unchanged; only what it is handed (model object, SAE, data) and what it leaves
behind (global grad mode, jaxtyping checks, prints, files in the working directory) are ours to manage.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel

from tsae_evals.errors import EvalFailed, UsageError
from tsae_evals.models import model_fingerprint
from tsae_evals.quiet import quiet_libraries
from tsae_evals.results import EvalResult, MetricInfo

if TYPE_CHECKING:
    from sae_lens import SAE

    from tsae_evals.context import EvalContext


@contextlib.contextmanager
def contained(what: str) -> Iterator[None]:
    """Run SAE-Bench code: jaxtyping's runtime checks off (its top-k probe step violates its own shape hints on any
    data); global grad mode, global RNG states (it reseeds them) and working directory restored; its prints
    dropped; any exception other than ours becomes `EvalFailed` naming `what`."""
    import random

    import jaxtyping
    import numpy as np
    import torch

    disabled = jaxtyping.config.jaxtyping_disable
    grad_enabled = torch.is_grad_enabled()
    cwd = os.getcwd()
    rng_states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        with (
            quiet_libraries(),
            warnings.catch_warnings(),
            # Its prints and per-dataset progress bars would bury our run summary; exceptions still propagate.
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            # SAE-Bench's sklearn probes and decoder-norm checks warn on every call; nothing for the user to act on.
            warnings.simplefilter("ignore")
            yield
    except (UsageError, EvalFailed):
        raise
    except Exception as exc:
        raise EvalFailed(f"SAE-Bench {what} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        jaxtyping.config.update("jaxtyping_disable", disabled)
        torch.set_grad_enabled(grad_enabled)
        os.chdir(cwd)
        random.setstate(rng_states[0])
        np.random.set_state(rng_states[1])
        torch.random.set_rng_state(rng_states[2])


def saebench_sae(ctx: EvalContext) -> SAE[Any]:
    """Our SAE with the config fields SAE-Bench reads (`hook_layer`, `architecture_str`, ...) filled in, on device."""
    from sae_bench.sae_bench_utils import general_utils

    with warnings.catch_warnings():
        # SAE-Bench warns on non-unit decoder norms; preflight already reports them.
        warnings.simplefilter("ignore")
        _, sae, _ = general_utils.load_and_format_sae("custom", ctx.sae, ctx.device)  # type: ignore[misc]
    return sae


def artifacts_folder(ctx: EvalContext, eval_name: str, data_settings: dict[str, Any]) -> Path:
    """Folder for an eval's cached activations and probes: shared by every SAE on the same model, hook and data
    settings (so one run computes the model's side once), never shared across different data settings (SAE-Bench
    keys its cache on model and hook only, so changed settings would silently reuse stale activations)."""
    key = json.dumps({"model": model_fingerprint(ctx.model), **data_settings}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = ctx.artifacts_dir / eval_name / f"{ctx.hook_name}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def saebench_output(
    output_cls: Any, *, eval_config: Any, metrics: Any, details: Any = (), unstructured: Any = None, **fields: Any
) -> Any:
    """SAE-Bench's `*EvalOutput` built (and so validated by its own model) from the sections an eval computed.
    Its identity, time and version fields stay placeholders: the runner's record fills them for every eval alike."""
    return output_cls(
        eval_config=eval_config,
        eval_id="tsae_evals",
        datetime_epoch_millis=int(time.time() * 1000),
        eval_result_metrics=metrics,
        eval_result_details=list(details),
        eval_result_unstructured=unstructured,
        sae_bench_commit_hash="",
        sae_lens_id="",
        sae_lens_release_id="",
        sae_lens_version="",
        sae_cfg_dict={},
        **fields,
    )


def dump_output(output: Any) -> dict[str, Any]:
    """SAE-Bench's output dataclass (or its `asdict`, as some `run_eval`s return it) as plain data, NaN kept (its
    `to_json_file` path turns NaN into -1)."""
    return output if isinstance(output, dict) else asdict(output)


class SaeBenchResult(EvalResult):
    """An SAE-Bench eval's output sections, kept in its layout so its own output model and tools read our file.

    Subclasses name the output model (`OUTPUT`, a dotted path) and declare, per `category.metric`, a label,
    direction and headline flag (`DECLARED`): SAE-Bench gives titles and descriptions but no direction."""

    OUTPUT: ClassVar[str]
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]]

    metrics: dict[str, dict[str, Any]]
    """SAE-Bench's metric categories, as its output model dumps them."""
    details: list[Any] = []
    """SAE-Bench's `eval_result_details` rows."""
    unstructured_output: Any = None
    """SAE-Bench's `eval_result_unstructured`."""
    sae_bench_config: dict[str, Any] = {}
    """The eval config handed to SAE-Bench, as it saw it."""

    @classmethod
    def from_output(cls, output: Any, **extra: Any) -> Self:
        dumped = dump_output(output)
        return cls(
            metrics=dumped["eval_result_metrics"],
            details=dumped.get("eval_result_details") or [],
            unstructured_output=dumped.get("eval_result_unstructured"),
            sae_bench_config=dumped["eval_config"],
            **extra,
        )

    def metrics_dict(self) -> dict[str, dict[str, Any]]:
        return {name: values for name, values in self.metrics.items() if values is not None}

    def details_list(self) -> list[Any]:
        return self.details

    def unstructured(self) -> Any:
        return self.unstructured_output

    def recorded_config(self, config: BaseModel) -> dict[str, Any]:
        # SAE-Bench's config as it ran (our settings resolved into its fields), so its output model validates the
        # file; our own config still decides reuse through provenance.config_hash.
        return self.sae_bench_config

    def metric_info(self) -> dict[str, MetricInfo]:
        categories = output_model(self.OUTPUT).__pydantic_fields__["eval_result_metrics"].annotation
        present = self.metrics_dict()
        info = {}
        for key, (label, higher_is_better, headline) in self.DECLARED.items():
            category, _, name = key.partition(".")
            if name not in present.get(category, {}):
                continue
            # SAE-Bench's output models are pydantic dataclasses: their fields live in `__pydantic_fields__`.
            category_cls = categories.__pydantic_fields__[category].annotation
            field = category_cls.__pydantic_fields__[name]
            info[key] = MetricInfo(
                label=label,
                higher_is_better=higher_is_better,
                headline=headline,
                description=field.description or field.title or label,
            )
        return info


def output_model(dotted: str) -> Any:
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def validate_with_saebench(record: BaseModel, dotted: str) -> None:
    """Validate a written record with SAE-Bench's own output model (raises pydantic's ValidationError)."""
    from pydantic import TypeAdapter

    TypeAdapter(output_model(dotted)).validate_python(record.model_dump())
