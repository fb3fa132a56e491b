"""SAE-Bench's evals on three SAEs: `run --evals <them>` against SAE-Bench's own per-eval entry points.

Every SAE-Bench eval that runs offline on SmolLM2: core, sparse_probing, sparse_probing_sae_probes, absorption, scr
and tpp (unlearning needs a Gemma-2 instruct model and the WMDP files, autointerp an LLM endpoint).

Ours: one model load by our loader, then per eval one `run()` on that model over the three SAEs; each eval computes
the model's side once and shares it across the SAEs (a single `run` of all six would pay its preflight once, not six
times). Theirs: SAE-Bench's entry point of each eval (`multiple_evals` for core, `run_eval` for the others) with the
same three SAE objects, the same settings (the configs our records say SAE-Bench saw) and the same offline data,
with its hub model load redirected to our offline model, loaded and laid out as TransformerLens does it (a fresh
load per call, as SAE-Bench does). The data each is pointed at:
- core: sae-lens' `load_dataset` answers the dataset name with the windows our run cut (and its hub check of a
  pretokenized dataset's tokenizer is skipped);
- absorption: its `get_alpha_tokens` answers with the capped, sorted vocabulary our adapter draws, and the defaults
  that put its files inside site-packages (and its `artifacts/` in the working directory) point into scratch;
- sparse probing: our adapter's class sets, served by its dataset loader (`get_multi_label_train_test_data`);
- SCR and TPP: our adapter's templated biographies, served by its `load_dataset`;
- sae-probes: its data is offline already.
As SAE-Bench has no seeds loop, SCR and TPP get one `run_eval` per seed, each with its own artifacts folder (SAE-Bench
keys its cache on model and hook only: a shared folder would hand seed 1 seed 0's activations and probes, and so
seed 0's numbers). Each eval writes to its own output folder (`run_eval` skips an SAE whose result file exists, and
the file names are the same for every eval), and a side that wrote fewer results than SAEs stops the benchmark (its
entry points swallow failures). The sides alternate eval by eval, so a slow spell of the shared machine falls on
both (run one after the other, the ratio moved from 0.52 to 0.45 when the machine slowed during SAE-Bench's half).
Goal: ours at most 0.6x.

Both sides start from empty artifact folders, with SAE-Bench's modules imported before either is timed. Random
TopK SAEs of the demo's width on layer 6: speed does not depend on training.

    .venv/bin/python benchmarks/saebench_evals.py [--device cpu] [--evals core,absorption,...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

EVALS = ["core", "sparse_probing", "sparse_probing_sae_probes", "absorption", "scr", "tpp"]
SETTINGS = [
    "absorption.words_per_letter=40",
    "absorption.min_feats_for_eval=10",
    'sparse_probing.dataset_names=["sae-probes/ag_news"]',
    "sparse_probing.probe_train_set_size=200",
    "sparse_probing.probe_test_set_size=100",
    'sparse_probing_sae_probes.dataset_names=["5_hist_fig_ismale"]',
    "scr.seeds=[0,1]",
    'scr.profession_pairs=[["professor","nurse"]]',
    "scr.train_set_size=100",
    "scr.test_set_size=60",
    "tpp.seeds=[0,1]",
    'tpp.professions=["nurse","surgeon","teacher"]',
    "tpp.train_set_size=100",
    "tpp.test_set_size=60",
]
"""Small enough for two CPU cores; the same for both sides. Absorption: 40 words a letter leave about 15 letters
whose ground-truth probe passes, so it needs 10 rather than 20 of them to go on (its probes and absorption
measurement run for every letter either way)."""


def _random_saes(root: Path, model_name: str, d_in: int) -> list[Path]:
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    paths = []
    for index in range(3):
        torch.manual_seed(index)
        metadata = SAEMetadata(
            hook_name="blocks.6.hook_resid_post", model_name=model_name, context_size=128, prepend_bos=True
        )
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=8 * d_in, k=32, metadata=metadata))
        path = root / f"random-{index}"
        sae.save_model(str(path))
        paths.append(path)
    return paths


@contextlib.contextmanager
def _offline_model(device: str, loads: list[float]) -> Iterator[None]:
    """SAE-Bench's and sae-probes' hub model loads answered by our offline model, each load timed."""
    from transformer_lens import HookedTransformer

    from tsae_evals import models

    def load(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        # As TransformerLens loads and lays it out (its state dict key by key, its weights contiguous): our
        # loader's one-call load and matmul-ready layout are part of what we supply, not SAE-Bench.
        with mock.patch.object(models, "state_dict_loaded_at_once", lambda model: contextlib.nullcontext()):
            model = models.load_model(device=device)
        for param in model.parameters():
            param.data = param.data.contiguous()
        loads.append(time.perf_counter() - started)
        return model

    with mock.patch.object(HookedTransformer, "from_pretrained_no_processing", load):
        yield


@contextlib.contextmanager
def _offline_windows(name: str, tokens: list[list[int]]) -> Iterator[None]:
    """sae-lens' hub dataset load, for the name SAE-Bench core is given, answered by the windows our run cut."""
    import datasets
    from sae_lens.training import activations_store

    load = activations_store.load_dataset

    def offline(path: str, *args: Any, **kwargs: Any) -> Any:
        return datasets.Dataset.from_dict({"tokens": tokens}) if path == name else load(path, *args, **kwargs)

    # Its check of a pretokenized hub dataset's tokenizer asks the hub too; these windows are the model's own.
    with (
        mock.patch.object(activations_store, "load_dataset", offline),
        mock.patch.object(activations_store, "validate_pretokenized_dataset_tokenizer", lambda *_a, **_k: None),
    ):
        yield


@contextlib.contextmanager
def _absorption_offline(vocabulary: list[str], folder: Path) -> Iterator[None]:
    """SAE-Bench absorption's vocabulary (`get_alpha_tokens`) answered by the capped list our adapter used, and its
    files (defaults inside site-packages, and `artifacts/` in the working directory) moved under `folder`."""
    import inspect

    from sae_bench.evals.absorption import common, feature_absorption, k_sparse_probing

    def moved(default: Any) -> Any:
        if isinstance(default, Path) and default.is_relative_to(common.RESULTS_DIR):
            return folder / default.relative_to(common.RESULTS_DIR)
        return default

    with contextlib.ExitStack() as stack:
        for module in (common, feature_absorption, k_sparse_probing):
            if hasattr(module, "get_alpha_tokens"):
                stack.enter_context(mock.patch.object(module, "get_alpha_tokens", lambda *_a, **_k: list(vocabulary)))
            for function in vars(module).values():
                if not inspect.isfunction(function) or function.__module__ != module.__name__:
                    continue
                if function.__defaults__:
                    defaults = tuple(moved(default) for default in function.__defaults__)
                    stack.enter_context(mock.patch.object(function, "__defaults__", defaults))
                if function.__kwdefaults__:
                    kwdefaults = {key: moved(default) for key, default in function.__kwdefaults__.items()}
                    stack.enter_context(mock.patch.object(function, "__kwdefaults__", kwdefaults))
        folder.mkdir(parents=True, exist_ok=True)
        stack.enter_context(contextlib.chdir(folder))
        yield


def _theirs(
    name: str,
    saes: list[Any],
    config: Any,
    record: dict[str, Any],
    device: str,
    scratch: str,
    loads: list[float],
    windows: list[list[int]],
    tokenizer: Any,
) -> None:
    """SAE-Bench's entry point for one eval (one per seed for SCR/TPP) on the same SAEs, settings and data."""
    from sae_bench.evals.absorption import main as absorption
    from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig
    from sae_bench.evals.core import main as core
    from sae_bench.evals.scr_and_tpp import main as scr_and_tpp
    from sae_bench.evals.scr_and_tpp.eval_config import ScrAndTppEvalConfig
    from sae_bench.evals.sparse_probing import main as probing
    from sae_bench.evals.sparse_probing.eval_config import SparseProbingEvalConfig
    from sae_bench.evals.sparse_probing_sae_probes import main as sae_probes
    from sae_bench.evals.sparse_probing_sae_probes.eval_config import SparseProbingSaeProbesEvalConfig
    from sae_bench.sae_bench_utils.dataset_info import profession_dict

    from tsae_evals.evals.saebench.absorption.eval import alphabetic_vocabulary
    from tsae_evals.evals.saebench.adapter import contained
    from tsae_evals.evals.saebench.scr_and_tpp.eval import templated_bios
    from tsae_evals.evals.saebench.sparse_probing.eval import offline_class_sets

    selected = [(f"random-{i}", sae) for i, sae in enumerate(saes)]
    # Each eval its own output folder: `run_eval` skips an SAE whose result file exists, and the file names are
    # the same for every eval.
    output = f"{scratch}/out-{name}"
    os.makedirs(output, exist_ok=True)  # absorption's `run_eval` writes into it without creating it
    with _offline_model(device, loads), contained("baseline"):
        if name == "core":
            with _offline_windows(record["dataset"], windows[: config.windows_needed()]):
                core.multiple_evals(
                    selected,
                    n_eval_reconstruction_batches=record["n_eval_reconstruction_batches"],
                    n_eval_sparsity_variance_batches=record["n_eval_sparsity_variance_batches"],
                    eval_batch_size_prompts=record["batch_size_prompts"],
                    compute_featurewise_density_statistics=True,
                    compute_featurewise_weight_based_metrics=True,
                    exclude_special_tokens_from_reconstruction=record["exclude_special_tokens_from_reconstruction"],
                    dataset=record["dataset"],
                    context_size=record["context_size"],
                    output_folder=output,
                    dtype=record["llm_dtype"],
                    device=device,
                )
        elif name == "absorption":
            vocabulary = alphabetic_vocabulary(tokenizer, config.words_per_letter, record["random_seed"])
            with _absorption_offline(vocabulary, Path(scratch) / "absorption-files"):
                absorption.run_eval(AbsorptionEvalConfig(**record), selected, device, output)
        elif name == "sparse_probing":
            cfg = SparseProbingEvalConfig(**record)
            with offline_class_sets(cfg.dataset_names):
                probing.run_eval(cfg, selected, device, output, artifacts_path=f"{scratch}/artifacts")
        elif name == "sparse_probing_sae_probes":
            cfg_probes = SparseProbingSaeProbesEvalConfig(**{**record, "results_path": f"{scratch}/sae_probes"})
            cfg_probes.model_cache_path = f"{scratch}/sae_probes_cache"
            sae_probes.run_eval(cfg_probes, selected, device, output)
        else:
            classes = [str(profession_dict[p]) for p in getattr(config, "professions", [])]
            for seed in config.seeds:
                cfg_scr = ScrAndTppEvalConfig(**{**record, "random_seed": seed})
                with templated_bios(seed, config, classes):
                    # force_rerun: otherwise it skips every seed after the first (its result file exists).
                    # One artifacts folder per seed: its cache is keyed on model and hook only, so a shared folder
                    # would hand seed 1 the activations and probes of seed 0 (and seed 0's numbers again).
                    scr_and_tpp.run_eval(
                        cfg_scr,
                        selected,
                        device,
                        output,
                        force_rerun=True,
                        artifacts_path=f"{scratch}/artifacts-{name}-seed{seed}",
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--evals", default=",".join(EVALS), help="a comma list of: " + ", ".join(EVALS))
    args = parser.parse_args()
    evals = [name for name in args.evals.split(",") if name]
    unknown = sorted(set(evals) - set(EVALS))
    if unknown:
        parser.error(f"unknown evals {', '.join(unknown)}; choose from {', '.join(EVALS)}")

    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    # Both sides import the same SAE-Bench modules; imported before either is timed, so neither pays for them.
    import sae_bench.evals.absorption.main
    import sae_bench.evals.core.main
    import sae_bench.evals.scr_and_tpp.main
    import sae_bench.evals.sparse_probing.main
    import sae_bench.evals.sparse_probing_sae_probes.main  # noqa: F401

    from tsae_evals.data import load_documents, make_windows
    from tsae_evals.models import DEFAULT_MODEL, load_model
    from tsae_evals.registry import get_eval
    from tsae_evals.results import read_record
    from tsae_evals.runner import RunRequest, build_configs, run
    from tsae_evals.saes import load_sae, resolve_sae

    configs = build_configs([get_eval(name) for name in evals], [s for s in SETTINGS if s.split(".")[0] in evals])
    ours: dict[str, float] = {}
    theirs: dict[str, float] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as root_name:
        root = Path(root_name)
        saes = _random_saes(root, DEFAULT_MODEL, 576)
        objects = [load_sae(resolve_sae(str(p)), args.device).eval() for p in saes]
        started = time.perf_counter()
        model = load_model(device=args.device)
        ours_load = time.perf_counter() - started
        tokenizer = model.tokenizer
        # The windows our run cuts (its defaults), for SAE-Bench core in place of its hub dataset.
        defaults = RunRequest(sae_specs=[], eval_names="")
        windows = make_windows(
            tokenizer,
            load_documents(defaults.dataset, seed=defaults.seed),
            context_size=defaults.context_size,
            n_windows=defaults.n_windows,
        ).tokens.tolist()
        for name in evals:
            request = RunRequest(
                sae_specs=[str(p) for p in saes],
                eval_names=name,
                device=args.device,
                results_dir=root / "results",
                artifacts_dir=root / "artifacts",
                config_overrides=[setting for setting in SETTINGS if setting.startswith(f"{name}.")],
                allow_degenerate=True,
            )
            started = time.perf_counter()
            outcomes = run(request, model_loader=lambda *_: model)
            ours[name] = time.perf_counter() - started
            failed = [f"{o.eval_name}: {o.message}" for o in outcomes if o.status != "ok"]
            if failed:
                raise SystemExit("our run failed: " + "; ".join(failed))
            records = {o.sae_label: read_record(o.path) for o in outcomes if o.path}
            own = sum(record.provenance.wall_time_s for record in records.values() if record.provenance)
            # SAE-Bench's config as our adapter handed it over (the same for every SAE of the run)
            record = next(record.eval_config for label, record in records.items() if label.endswith("-0"))
            started = time.perf_counter()
            _theirs(
                name, objects, configs[name], record, args.device, str(root / "saebench"), loads, windows, tokenizer
            )
            theirs[name] = time.perf_counter() - started
            # Its entry points skip or swallow what fails (core logs and goes on; absorption stops at a model with
            # too few letter features): a side that wrote fewer results did less work and is no baseline.
            written = len(list((root / "saebench" / f"out-{name}").rglob("*_eval_results.json")))
            if written < len(saes):
                raise SystemExit(f"SAE-Bench's {name} wrote {written} results for {len(saes)} SAEs")
            print(
                f"  {name:28s} ours {ours[name]:6.1f} s (the eval itself {own:6.1f} s), SAE-Bench {theirs[name]:6.1f} s",
                flush=True,
            )
    ours_total = ours_load + sum(ours.values())
    theirs_total = sum(theirs.values())
    print(f"3 SAEs x {', '.join(evals)} on {DEFAULT_MODEL} ({args.device})")
    print(f"  ours: one model load ({ours_load:.1f} s), then per eval one `run` on it: {ours_total:7.1f} s")
    print(f"  SAE-Bench, per-eval entry points ({len(loads)} model loads, {sum(loads):.1f} s): {theirs_total:7.1f} s")
    print(f"  ratio ours / SAE-Bench: {ours_total / theirs_total:.3f}  (goal <= 0.6)")


if __name__ == "__main__":
    main()
