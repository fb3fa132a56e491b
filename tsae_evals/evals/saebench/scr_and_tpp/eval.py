"""SAE-Bench's SCR and TPP (`scr_and_tpp.main.run_eval_single_sae`) on our model object, with templated
biographies standing in for bias-in-bios, repeated over seeds.

What it absorbs:
- Its data comes from `load_dataset("LabHC/bias_in_bios")`; ours is served at that same boundary (the
  `load_dataset` its two data modules call) under our own name, with SAE-Bench's column layout and codes, so its
  spurious-correlation and balancing code builds the probe sets unchanged.
- Its class lists and column lookups are module-level dicts keyed by dataset name; our name is added to them for
  the duration of the call only.
- Ablating more latents than the SAE has is impossible: thresholds above its width are dropped (their metrics
  stay null) rather than crashing its top-k.
- One seed is one draw; SCR/TPP move a lot under reseeding (Chanin 2026), so every seed runs and the record holds
  the mean in SAE-Bench's categories, the standard deviation in `seed_spread`, and each seed's rows in the details.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from unittest import mock

from tsae_evals.data import bios
from tsae_evals.errors import UsageError
from tsae_evals.evals.saebench.adapter import artifacts_folder, contained, saebench_output, saebench_sae
from tsae_evals.evals.saebench.encode_memo import memoized_encodes
from tsae_evals.evals.saebench.scr_and_tpp.config import ScrConfig, TppConfig
from tsae_evals.evals.saebench.scr_and_tpp.result import SPREAD, ScrResult, TppResult
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape


def _check_professions(names: list[str], field: str) -> None:
    unknown = sorted(set(names) - set(bios.ACTIVITIES))
    if unknown:
        raise UsageError(
            f"{field}: no templated biographies for {', '.join(unknown)}",
            f"choose from {', '.join(bios.ACTIVITIES)}",
        )


def check_scr(shape: RunShape, cfg: ScrConfig) -> None:
    _check_professions([p for pair in cfg.profession_pairs for p in pair], "scr.profession_pairs")


def check_tpp(shape: RunShape, cfg: TppConfig) -> None:
    _check_professions(cfg.professions, "tpp.professions")
    if len(cfg.professions) < 2:
        raise UsageError("tpp.professions needs at least two professions", "name two or more")


@contextlib.contextmanager
def templated_bios(seed: int, cfg: ScrConfig | TppConfig, tpp_classes: list[str]) -> Iterator[None]:
    """SAE-Bench's bias-in-bios loaders and lookups, answering for our templated set."""
    from sae_bench.evals.scr_and_tpp import dataset_creation
    from sae_bench.evals.scr_and_tpp import main as scr_main
    from sae_bench.sae_bench_utils import dataset_info, dataset_utils

    hub_loaders = {module: module.load_dataset for module in (dataset_creation, dataset_utils)}

    def loader_for(module: Any) -> Any:
        def load_dataset(name: str, *args: Any, **kwargs: Any) -> Any:
            if name != bios.DATASET:
                return hub_loaders[module](name, *args, **kwargs)
            # More per quadrant than SAE-Bench draws: its SCR asserts the correlated quadrants hold over twice that.
            return {
                "train": bios.bios_frame("train", cfg.train_set_size, seed),
                "test": bios.bios_frame("test", cfg.test_set_size, seed),
            }

        return load_dataset

    metadata = {
        "text_column_name": "hard_text",
        "column1_name": "profession",
        "column2_name": "gender",
        "column2_autointerp_name": "gender",
        "column1_mapping": dataset_info.profession_dict,
        "column2_mapping": dataset_info.gender_dict,
    }
    with (
        mock.patch.object(dataset_creation, "load_dataset", loader_for(dataset_creation)),
        mock.patch.object(dataset_utils, "load_dataset", loader_for(dataset_utils)),
        mock.patch.dict(dataset_info.dataset_metadata, {bios.DATASET: metadata}),
        mock.patch.dict(dataset_info.chosen_classes_per_dataset, {bios.CLASS_SET: tpp_classes}),
        mock.patch.dict(scr_main.COLUMN2_VALS_LOOKUP, {bios.CLASS_SET: ("male", "female")}),
    ):
        yield


def saebench_config(
    cfg: ScrConfig | TppConfig,
    seed: int,
    n_values: list[int],
    pairs: list[tuple[str, ...]],
    *,
    llm_batch_size: int,
    model_name: str,
) -> Any:
    """SAE-Bench's config for one seed of our SCR (a config with profession pairs) or TPP."""
    from sae_bench.evals.scr_and_tpp.eval_config import ScrAndTppEvalConfig

    return ScrAndTppEvalConfig(
        random_seed=seed,
        dataset_names=[bios.CLASS_SET],
        perform_scr=isinstance(cfg, ScrConfig),
        train_set_size=cfg.train_set_size,
        test_set_size=cfg.test_set_size,
        context_length=cfg.context_length,
        probe_epochs=cfg.probe_epochs,
        sae_batch_size=cfg.sae_batch_size,
        llm_batch_size=llm_batch_size,
        llm_dtype="float32",
        model_name=model_name,
        n_values=n_values,
        column1_vals_lookup={bios.CLASS_SET: pairs},
    )


def _run_seeds(ctx: EvalContext, cfg: ScrConfig | TppConfig) -> tuple[list[tuple[int, dict[str, Any], Any]], Any]:
    """SAE-Bench's per-SAE run once per seed: [(seed, results, per-class results)], and the last config it saw."""
    from sae_bench.evals.scr_and_tpp import main as scr_main
    from sae_bench.sae_bench_utils.dataset_info import profession_dict

    name = "scr" if isinstance(cfg, ScrConfig) else "tpp"
    sae = saebench_sae(ctx)
    n_values = [n for n in cfg.n_values if n <= sae.cfg.d_sae]
    pairs = [tuple(pair) for pair in cfg.profession_pairs] if isinstance(cfg, ScrConfig) else []
    tpp_classes = [str(profession_dict[p]) for p in cfg.professions] if isinstance(cfg, TppConfig) else []
    runs = []
    saebench_cfg = None
    for seed in cfg.seeds:
        saebench_cfg = saebench_config(
            cfg, seed, n_values, pairs, llm_batch_size=ctx.batch_size, model_name=str(ctx.model.cfg.model_name)
        )
        # The model's activations and probes depend on everything but the SAE: shared by every SAE of the run.
        folder = artifacts_folder(
            ctx,
            name,
            {"seed": seed, "pairs": pairs, "classes": tpp_classes, **cfg.model_dump(exclude={"seeds", "n_values"})},
        )
        with (
            contained(name),
            templated_bios(seed, cfg, tpp_classes),
            memoized_encodes(sae),
        ):
            results, per_class = scr_main.run_eval_single_sae(saebench_cfg, sae, ctx.model, ctx.device, str(folder))
        runs.append((seed, results, per_class))
    return runs, saebench_cfg


def _mean_and_spread(
    runs: list[tuple[int, dict[str, Any], Any]], metrics_cls: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Per metric of SAE-Bench's `metrics_cls`: mean over the seeds where SAE-Bench gave a number (it gives None
    when a probe's accuracies leave the ratio undefined), their sample standard deviation (None below two), and
    how many seeds counted. Every metric key is present whatever the SAE's width."""
    mean: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    counted: dict[str, int] = {}
    for key in metrics_cls.__pydantic_fields__:
        values = [value for _, results, _ in runs if (value := results.get(key)) is not None]
        counted[key] = len(values)
        mean[key] = statistics.fmean(values) if values else None
        spread[key] = statistics.stdev(values) if len(values) > 1 else None
    return mean, spread, counted


def _details(runs: list[tuple[int, dict[str, Any], Any]], detail_cls: Any) -> list[Any]:
    return [
        detail_cls(dataset_name=f"{name.removesuffix('_results')} seed={seed}", **values)
        for seed, results, _ in runs
        for name, values in results.items()
        if isinstance(values, dict)
    ]


@register_eval("scr", version=1, config=ScrConfig, group="saebench", check=check_scr)
def scr(ctx: EvalContext, cfg: ScrConfig) -> ScrResult:
    """SAE-Bench SCR: ablating gender latents removes a gender-profession shortcut from a biased probe."""
    from sae_bench.evals.scr_and_tpp.eval_output import ScrEvalOutput, ScrMetricCategories, ScrMetrics, ScrResultDetail

    runs, saebench_cfg = _run_seeds(ctx, cfg)
    mean, spread, counted = _mean_and_spread(runs, ScrMetrics)
    output = saebench_output(
        ScrEvalOutput,
        eval_type_id="scr",
        eval_config=saebench_cfg,
        metrics=ScrMetricCategories(scr_metrics=ScrMetrics(**mean)),
        details=_details(runs, ScrResultDetail),
        unstructured={"seeds_with_value": counted},
    )
    result = ScrResult.from_output(output)
    result.metrics[SPREAD] = spread
    return result


@register_eval("tpp", version=1, config=TppConfig, group="saebench", check=check_tpp)
def tpp(ctx: EvalContext, cfg: TppConfig) -> TppResult:
    """SAE-Bench TPP: ablating one class's latents hurts that class's probe and spares the others."""
    from sae_bench.evals.scr_and_tpp.eval_output import TppEvalOutput, TppMetricCategories, TppMetrics, TppResultDetail

    runs, saebench_cfg = _run_seeds(ctx, cfg)
    mean, spread, counted = _mean_and_spread(runs, TppMetrics)
    output = saebench_output(
        TppEvalOutput,
        eval_type_id="tpp",
        eval_config=saebench_cfg,
        metrics=TppMetricCategories(tpp_metrics=TppMetrics(**mean)),
        details=_details(runs, TppResultDetail),
        unstructured={
            "seeds_with_value": counted,
            "per_class": {str(seed): per_class for seed, _, per_class in runs},
        },
    )
    result = TppResult.from_output(output)
    result.metrics[SPREAD] = spread
    return result
