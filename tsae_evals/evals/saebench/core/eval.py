"""SAE-Bench core through `sae_bench.evals.core.main`: its metric code runs unchanged on our model object and windows.

What it absorbs:
- `multiple_evals` loads the model by hub name and swallows every exception into `[]`; we call `run_evals`
  with our model directly, and `contained` turns any failure into `EvalFailed` with the cause.
- All `compute_*` flags default to False, and saving crashes unless both featurewise flags are on: we turn all
  of them on.
- It runs the model's clean and zero-ablated forwards, and the forward to the hook, again for every SAE; the
  model it gets answers those from memory for the later SAEs of a run (`shared_forwards.py`, bit-identical).
- Results are built by SAE-Bench's own `save_single_eval_result` (into a scratch file we read back), so the
  metric categories and per-latent details are exactly its schema; NaN stays NaN (we skip its NaN -> -1 step).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsae_evals.errors import UsageError
from tsae_evals.evals.saebench.adapter import contained, saebench_sae
from tsae_evals.evals.saebench.core.config import CoreConfig
from tsae_evals.evals.saebench.core.result import CoreResult
from tsae_evals.evals.saebench.core.shared_forwards import SharedForwards
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape


def check(shape: RunShape, cfg: CoreConfig) -> None:
    needed = cfg.windows_needed()
    if shape.n_windows < needed:
        raise UsageError(
            f"core needs {needed} windows (batch_size_prompts x batches) but the run has {shape.n_windows}",
            f"pass --n-windows {needed} or more, or lower core.batch_size_prompts",
        )


@register_eval("core", version=1, config=CoreConfig, group="saebench", check=check)
def core(ctx: EvalContext, cfg: CoreConfig) -> CoreResult:
    """SAE-Bench core: reconstruction, KL/CE loss recovered, shrinkage, sparsity and feature density."""
    import datasets
    from sae_bench.evals.core import main as core_main
    from sae_bench.evals.core.eval_config import CoreEvalConfig
    from sae_lens.training.activations_store import ActivationsStore

    needed = cfg.windows_needed()
    sae = saebench_sae(ctx)
    saebench_cfg = CoreEvalConfig(
        model_name=str(ctx.model.cfg.model_name),
        llm_dtype="float32",
        batch_size_prompts=cfg.batch_size_prompts,
        n_eval_reconstruction_batches=cfg.n_eval_reconstruction_batches,
        n_eval_sparsity_variance_batches=cfg.n_eval_sparsity_variance_batches,
        dataset=ctx.windows.source,
        context_size=ctx.windows.context_size,
        compute_kl=True,
        compute_ce_loss=True,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
        compute_featurewise_weight_based_metrics=True,
        exclude_special_tokens_from_reconstruction=cfg.exclude_special_tokens_from_reconstruction,
    )
    # Pre-tokenised windows: the store uses them as they are, so no window crosses a document boundary.
    windows = datasets.Dataset.from_dict({"tokens": ctx.windows.tokens[:needed].tolist()})
    tokenizer = ctx.model.tokenizer
    special_tokens: set[int | None] = {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}
    with contained("core"):
        store = ActivationsStore.from_sae(
            ctx.model,
            sae,
            dataset=windows,
            context_size=ctx.windows.context_size,
            store_batch_size_prompts=cfg.batch_size_prompts,
            device=ctx.device,
        )
        # The run's SAEs read the same windows: the forwards that do not involve the SAE run once for all of them.
        model = SharedForwards(ctx.model, scope=ctx.windows)
        scalar_metrics, feature_metrics = core_main.run_evals(
            sae, store, model, saebench_cfg, ignore_tokens=special_tokens
        )
        scalar_metrics["misc_metrics"] = core_main.calculate_misc_metrics(feature_metrics)
        output = _saebench_output(core_main, saebench_cfg, scalar_metrics, feature_metrics, sae)
    return CoreResult.from_output(output)


def _saebench_output(
    core_main: Any, saebench_cfg: Any, scalar_metrics: dict[str, Any], feature_metrics: dict[str, Any], sae: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "core.json"
        core_main.save_single_eval_result(
            {
                "eval_cfg": saebench_cfg,
                "metrics": scalar_metrics,
                "feature_metrics": feature_metrics,
                "sae_id": "custom_sae",
                "sae_set": "custom",
            },
            eval_instance_id="tsae_evals",
            sae_lens_version="",
            sae_bench_commit_hash="",
            json_path=str(path),
            sae=sae,
        )
        return dict(json.loads(path.read_text()))
