"""SAE-Bench's sparse probing (`run_eval_single_sae`) on our model object and SAE, with offline labelled data.

What it absorbs:
- SAE-Bench dispatches its hub datasets by hard-coded name; offline `sae-probes/<name>` sets are served through
  the same loader (`dataset_utils.get_multi_label_train_test_data`) and class list, so its probing code is
  untouched and hub names still work where the hub is reachable.
- Its top-k probe step violates its own jaxtyping hints on any data (`contained` turns the checks off).
- It caches the model's activations per dataset in a folder keyed on model and hook only; ours also keys on the
  data settings, so changed sizes never reuse stale activations, and every SAE of a run shares them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from unittest import mock

from tsae_evals.data import labelled
from tsae_evals.evals.saebench.adapter import artifacts_folder, contained, saebench_output, saebench_sae
from tsae_evals.evals.saebench.sparse_probing.config import SparseProbingConfig
from tsae_evals.evals.saebench.sparse_probing.result import SparseProbingResult
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape


def check(shape: RunShape, cfg: SparseProbingConfig) -> None:
    labelled.check_names(cfg.dataset_names, where=" in sparse_probing.dataset_names")


@contextlib.contextmanager
def offline_class_sets(names: list[str]) -> Iterator[None]:
    """Serve `sae-probes/<name>` sets through SAE-Bench's dataset loader; other names go to its own code."""
    from sae_bench.sae_bench_utils import dataset_info, dataset_utils

    hub_loader = dataset_utils.get_multi_label_train_test_data

    def loader(name: str, train_size: int, test_size: int, seed: int) -> Any:
        if labelled.is_offline_name(name):
            return labelled.train_test_split(name, train_size, test_size, seed)
        return hub_loader(name, train_size, test_size, seed)

    classes = {name: list(labelled.class_texts(name)) for name in names if labelled.is_offline_name(name)}
    with (
        mock.patch.object(dataset_utils, "get_multi_label_train_test_data", loader),
        mock.patch.dict(dataset_info.chosen_classes_per_dataset, classes),
    ):
        yield


def saebench_config(ctx: EvalContext, cfg: SparseProbingConfig) -> Any:
    from sae_bench.evals.sparse_probing.eval_config import SparseProbingEvalConfig

    return SparseProbingEvalConfig(
        random_seed=ctx.seed if cfg.random_seed is None else cfg.random_seed,
        dataset_names=list(cfg.dataset_names),
        probe_train_set_size=cfg.probe_train_set_size,
        probe_test_set_size=cfg.probe_test_set_size,
        context_length=cfg.context_length or ctx.windows.context_size,
        sae_batch_size=cfg.sae_batch_size,
        llm_batch_size=ctx.batch_size,
        llm_dtype="float32",
        model_name=str(ctx.model.cfg.model_name),
        k_values=list(cfg.k_values),
        lower_vram_usage=False,
    )


@register_eval("sparse_probing", version=1, config=SparseProbingConfig, group="saebench", check=check)
def sparse_probing(ctx: EvalContext, cfg: SparseProbingConfig) -> SparseProbingResult:
    """SAE-Bench sparse probing: top-k latent probes per class against probes on the model's own activations."""
    from sae_bench.evals.sparse_probing import main as probing
    from sae_bench.evals.sparse_probing.eval_output import (
        SparseProbingEvalOutput,
        SparseProbingLlmMetrics,
        SparseProbingMetricCategories,
        SparseProbingResultDetail,
        SparseProbingSaeMetrics,
    )

    saebench_cfg = saebench_config(ctx, cfg)
    sae = saebench_sae(ctx)
    # Everything that decides the model's activations (not the SAE) keys the shared cache.
    data_settings = {
        key: getattr(saebench_cfg, key)
        for key in ("dataset_names", "probe_train_set_size", "probe_test_set_size", "context_length", "random_seed")
    }
    folder = artifacts_folder(ctx, "sparse_probing", {**data_settings, "k_values": saebench_cfg.k_values})
    with contained("sparse_probing"), offline_class_sets(saebench_cfg.dataset_names):
        results, per_class = probing.run_eval_single_sae(
            saebench_cfg, sae, ctx.model, ctx.device, str(folder), save_activations=True
        )
        # The same assembly as SAE-Bench's `run_eval`, minus its hub model load and its file write.
        output = saebench_output(
            SparseProbingEvalOutput,
            eval_config=saebench_cfg,
            metrics=SparseProbingMetricCategories(
                llm=SparseProbingLlmMetrics(
                    **{k: v for k, v in results.items() if k.startswith("llm_") and not isinstance(v, dict)}
                ),
                sae=SparseProbingSaeMetrics(
                    **{k: v for k, v in results.items() if k.startswith("sae_") and not isinstance(v, dict)}
                ),
            ),
            details=[
                SparseProbingResultDetail(dataset_name=name, **values)
                for name, values in results.items()
                if isinstance(values, dict)
            ],
            unstructured=per_class,
        )
    return SparseProbingResult.from_output(output)
