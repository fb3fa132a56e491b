"""SAE-Bench's sae-probes wrapper (`sparse_probing_sae_probes.main.run_eval`) on our model object.

What it absorbs:
- sae-probes loads the model by hub name only when the model's activations are missing from its cache; we fill
  that cache first with its own `ensure_dataset_activations`, handing it our model, so its loader never runs.
- SAE-Bench reads its "commit hash" with `git rev-parse` in the working directory (the user's repository): replaced
  by the installed version.
- Its per-SAE results are idempotent by file name (a retrained SAE of the same name would reuse stale numbers):
  each call gets a results folder of its own, removed afterwards. What does not depend on the SAE is cached and
  shared by every SAE of a run: the model's activations (keyed on model, hook and length) and its logistic
  baseline on them (keyed on those and the seed), which SAE-Bench's `run_eval` would otherwise fit again for each
  SAE we hand it one at a time.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
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

SAE_PROBES_BATCH_SIZE = 32
"""Texts per model forward when filling sae-probes' activation cache (its `ensure_dataset_activations` default)."""


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
    seed = ctx.seed if cfg.random_seed is None else cfg.random_seed
    model_cache = artifacts_folder(ctx, "sparse_probing_sae_probes", {"max_seq_len": max_seq_len})
    # sae-probes writes the baseline at the top of `results_path` and each SAE's results in a subfolder named after
    # the SAE's release: a folder keyed on what the baseline depends on, and a release name used once.
    results = artifacts_folder(
        ctx, "sparse_probing_sae_probes_results", {"max_seq_len": max_seq_len, "seed": seed, "method": "logreg"}
    )
    release = f"tsae_evals-{uuid.uuid4().hex}"
    model_name = str(ctx.model.cfg.model_name)
    sae = saebench_sae(ctx)
    with tempfile.TemporaryDirectory(prefix="tsae-sae-probes-") as scratch:
        saebench_cfg = SparseProbingSaeProbesEvalConfig(
            model_name=model_name,
            random_seed=seed,
            dataset_names=list(cfg.dataset_names),
            reg_type=cfg.reg_type,
            setting="normal",
            ks=list(cfg.ks),
            binarize=cfg.binarize,
            results_path=str(results),
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
                # sae-probes' own default as a floor: its texts are short, and on a CPU 8 per forward (our default
                # there) spends a quarter of the time on per-forward overhead
                batch_size=max(ctx.batch_size, SAE_PROBES_BATCH_SIZE),
                model=ctx.model,
            )
            try:
                outputs = wrapper.run_eval(
                    saebench_cfg, [(release, sae)], ctx.device, f"{scratch}/out", force_rerun=True
                )
            finally:
                for sae_results in results.glob(f"{release}_*"):
                    shutil.rmtree(sae_results)
        (output,) = outputs.values()
    # The SAE's own results are gone with their folder; the caches are worth keeping on record.
    output["eval_config"]["results_path"] = ""
    return SparseProbingSaeProbesResult.from_output(output)
