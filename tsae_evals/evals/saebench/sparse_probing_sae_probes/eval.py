"""SAE-Bench's sae-probes wrapper (`sparse_probing_sae_probes.main.run_eval`) on our model object.

What it absorbs:
- sae-probes loads the model by hub name only when the model's activations are missing from its cache; we fill
  that cache first with its own `ensure_dataset_activations`, handing it our model, so its loader never runs.
- SAE-Bench reads its "commit hash" with `git rev-parse` in the working directory (the user's repository): replaced
  by the installed version.
- Its per-SAE results are idempotent by file name (a retrained SAE of the same name would reuse stale numbers): we
  give each call a fresh results folder; only the model's activations are cached, keyed on model, hook and length.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING
from unittest import mock

from tsae_evals.errors import UsageError
from tsae_evals.evals.saebench.adapter import artifacts_folder, contained, saebench_sae
from tsae_evals.evals.saebench.sparse_probing_sae_probes.config import SparseProbingSaeProbesConfig
from tsae_evals.evals.saebench.sparse_probing_sae_probes.result import SparseProbingSaeProbesResult
from tsae_evals.registry import register_eval
from tsae_evals.results import installed_versions

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape


def check(shape: RunShape, cfg: SparseProbingSaeProbesConfig) -> None:
    from tsae_evals.data.labelled import sae_probes_data_dir

    available = {path.name.removesuffix(".csv.zst") for path in sae_probes_data_dir().glob("*.csv.zst")}
    missing = [name for name in cfg.dataset_names if name not in available]
    if missing:
        raise UsageError(
            f"sparse_probing_sae_probes.dataset_names: no sae-probes set named {', '.join(missing)}",
            "use numbered tags such as 5_hist_fig_ismale (the files in sae_probes/data/cleaned_data)",
        )


@register_eval(
    "sparse_probing_sae_probes", version=1, config=SparseProbingSaeProbesConfig, group="saebench", check=check
)
def sparse_probing_sae_probes(ctx: EvalContext, cfg: SparseProbingSaeProbesConfig) -> SparseProbingSaeProbesResult:
    """SAE-Bench's sae-probes: top-k SAE-latent probes on 113-style binary tasks against a model-activation baseline."""
    from sae_bench.evals.sparse_probing_sae_probes import main as wrapper
    from sae_bench.evals.sparse_probing_sae_probes.eval_config import SparseProbingSaeProbesEvalConfig
    from sae_probes.generate_model_activations import ensure_dataset_activations

    max_seq_len = cfg.max_seq_len or ctx.windows.context_size
    model_cache = artifacts_folder(ctx, "sparse_probing_sae_probes", {"max_seq_len": max_seq_len})
    model_name = str(ctx.model.cfg.model_name)
    sae = saebench_sae(ctx)
    with tempfile.TemporaryDirectory(prefix="tsae-sae-probes-") as scratch:
        saebench_cfg = SparseProbingSaeProbesEvalConfig(
            model_name=model_name,
            random_seed=ctx.seed if cfg.random_seed is None else cfg.random_seed,
            dataset_names=list(cfg.dataset_names),
            reg_type=cfg.reg_type,
            setting="normal",
            ks=list(cfg.ks),
            binarize=cfg.binarize,
            results_path=f"{scratch}/results",
            model_cache_path=str(model_cache),
            include_llm_baseline=cfg.include_llm_baseline,
            baseline_method="logreg",
        )
        with (
            contained("sparse_probing_sae_probes"),
            mock.patch.object(
                wrapper, "get_sae_bench_version", lambda: f"sae-bench=={installed_versions()['sae-bench']}"
            ),
        ):
            ensure_dataset_activations(
                model_name=model_name,
                dataset_short_names=list(cfg.dataset_names),
                hook_names=[ctx.hook_name],
                model_cache_path=model_cache,
                device=ctx.device,
                max_seq_len=max_seq_len,
                batch_size=ctx.batch_size,
                model=ctx.model,
            )
            outputs = wrapper.run_eval(
                saebench_cfg, [("tsae_evals", sae)], ctx.device, f"{scratch}/out", force_rerun=True
            )
        (output,) = outputs.values()
    # The scratch paths mean nothing once the folder is gone; the cache folder is worth keeping on record.
    output["eval_config"]["results_path"] = ""
    return SparseProbingSaeProbesResult.from_output(output)
