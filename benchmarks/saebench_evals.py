"""SAE-Bench's evals on three SAEs: `run --evals <them>` against SAE-Bench's own per-eval entry points, one run.

Ours: one model load by our loader, then per eval one `run()` on that model over the three SAEs, for every
SAE-Bench eval whose `run_eval` entry point takes SAE objects and can be pointed at the same data (sparse_probing,
sparse_probing_sae_probes, scr, tpp); each eval computes the model's side once and shares it across the SAEs (a
single `run` of all four would pay its preflight once, not four times). Theirs: SAE-Bench's `run_eval` of each eval
with the same three SAE objects, the same settings (the configs our records say SAE-Bench saw) and the same offline
data, with its hub model load redirected to our offline model, loaded and laid out as TransformerLens does it (a
fresh load per call, as SAE-Bench does), and, as SAE-Bench has no seeds loop, one `run_eval` per seed for SCR and
TPP, each with its own artifacts folder (SAE-Bench keys its cache on model and hook only: a shared folder would hand
seed 1 seed 0's activations and probes, and so seed 0's numbers). Each eval writes to its own output folder
(`run_eval` skips an SAE whose result file exists, and the file names are the same for every eval). The sides
alternate eval by eval, so a slow spell of the shared machine falls on both (run one after the other, the ratio
moved from 0.52 to 0.45 when the machine slowed during SAE-Bench's half). Left out: core (its entry point,
`multiple_evals`, reads its dataset from the hub by name) and absorption (its `run_eval` has no vocabulary cap, so
it probes SmolLM2's whole 47k-word vocabulary: hours on a CPU, and it writes into site-packages). Goal: ours at
most 0.6x.

Both sides start from empty artifact folders, with SAE-Bench's modules imported before either is timed. Random
TopK SAEs of the demo's width on layer 6: speed does not depend on training.

    .venv/bin/python benchmarks/saebench_evals.py [--device cpu]
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

EVALS = ["sparse_probing", "sparse_probing_sae_probes", "scr", "tpp"]
SETTINGS = [
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
"""Small enough for two CPU cores; the same for both sides."""


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


def _theirs(
    name: str, saes: list[Any], config: Any, record: dict[str, Any], device: str, scratch: str, loads: list[float]
) -> None:
    """SAE-Bench's entry point for one eval (one per seed for SCR/TPP) on the same SAEs, settings and data."""
    from sae_bench.evals.scr_and_tpp import main as scr_and_tpp
    from sae_bench.evals.scr_and_tpp.eval_config import ScrAndTppEvalConfig
    from sae_bench.evals.sparse_probing import main as probing
    from sae_bench.evals.sparse_probing.eval_config import SparseProbingEvalConfig
    from sae_bench.evals.sparse_probing_sae_probes import main as sae_probes
    from sae_bench.evals.sparse_probing_sae_probes.eval_config import SparseProbingSaeProbesEvalConfig
    from sae_bench.sae_bench_utils.dataset_info import profession_dict

    from tsae_evals.evals.saebench.adapter import contained
    from tsae_evals.evals.saebench.scr_and_tpp.eval import templated_bios
    from tsae_evals.evals.saebench.sparse_probing.eval import offline_class_sets

    selected = [(f"random-{i}", sae) for i, sae in enumerate(saes)]
    # Each eval its own output folder: `run_eval` skips an SAE whose result file exists, and the file names are
    # the same for every eval.
    output = f"{scratch}/out-{name}"
    with _offline_model(device, loads), contained("baseline"):
        if name == "sparse_probing":
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
    args = parser.parse_args()

    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    # Both sides import the same SAE-Bench modules; imported before either is timed, so neither pays for them.
    import sae_bench.evals.scr_and_tpp.main
    import sae_bench.evals.sparse_probing.main
    import sae_bench.evals.sparse_probing_sae_probes.main  # noqa: F401

    from tsae_evals.models import DEFAULT_MODEL, load_model
    from tsae_evals.registry import get_eval
    from tsae_evals.results import read_record
    from tsae_evals.runner import RunRequest, build_configs, run
    from tsae_evals.saes import load_sae, resolve_sae

    configs = build_configs([get_eval(name) for name in EVALS], SETTINGS)
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
        for name in EVALS:
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
            _theirs(name, objects, configs[name], record, args.device, str(root / "saebench"), loads)
            theirs[name] = time.perf_counter() - started
            print(
                f"  {name:28s} ours {ours[name]:6.1f} s (the eval itself {own:6.1f} s), SAE-Bench {theirs[name]:6.1f} s",
                flush=True,
            )
    ours_total = ours_load + sum(ours.values())
    theirs_total = sum(theirs.values())
    print(f"3 SAEs x {', '.join(EVALS)} on {DEFAULT_MODEL} ({args.device})")
    print(f"  ours: one model load ({ours_load:.1f} s), then per eval one `run` on it: {ours_total:7.1f} s")
    print(f"  SAE-Bench, per-eval entry points ({len(loads)} model loads, {sum(loads):.1f} s): {theirs_total:7.1f} s")
    print(f"  ratio ours / SAE-Bench: {ours_total / theirs_total:.3f}  (goal <= 0.6)")


if __name__ == "__main__":
    main()
