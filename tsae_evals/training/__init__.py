"""`train`: build the job for a request, run the architecture's recipe, save the SAE in sae-lens's format.

Recipes register in custom_saes.training.registry: the tsae_ architectures and the baselines in custom_saes, the
sae-lens ones (relu, topk, batchtopk) in `sae_lens_recipes`. `job` implements what a recipe gets, `options` parses
`--set`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from custom_saes.errors import RecipeError
from custom_saes.training.registry import TRAINING_ARCHITECTURES, TrainingArchitecture, TrainingJob
from tsae_evals.data.documents import DEFAULT_DATASET
from tsae_evals.errors import UsageError, unknown_name
from tsae_evals.fs import atomic_directory
from tsae_evals.models import DEFAULT_MODEL
from tsae_evals.quiet import quiet_libraries
from tsae_evals.training import sae_lens_recipes  # noqa: F401  (registers relu, topk and batchtopk)
from tsae_evals.training.job import ModelTrainingJob, checkpoint_dir
from tsae_evals.training.options import parse_options

__all__ = ["TrainRequest", "checkpoint_dir", "train", "training_architectures"]


@dataclass(frozen=True)
class TrainRequest:
    """One `train` invocation."""

    arch: str
    """Architecture id (see training_architectures())."""
    layer: int
    """Residual stream layer: the SAE reads blocks.{layer}.hook_resid_post."""
    tokens: int
    """Training activations (tokens) to consume."""
    out: Path
    """Directory to write the sae-lens SAE to."""
    expansion: int = 4
    """d_sae = expansion * d_model."""
    l1_coefficient: float | None = None
    """L1 penalty of ReLU-family SAEs; None: the architecture's default (SAE_LENS_L1 for relu, PHASED_L1 for the
    phased tsae_ recipes; both give L0 near 140 on SmolLM2 layer 6 at 150k-300k tokens)."""
    k: int = 32
    """Active latents per token for TopK and BatchTopK SAEs."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size_tokens: int = 2048
    """Activations per optimiser step."""
    context_size: int = 128
    """Tokens per window, BOS included."""
    model: str = DEFAULT_MODEL
    """Model the activations come from."""
    dataset: str = DEFAULT_DATASET
    """Text source."""
    seed: int = 0
    """Seed of SAE initialisation and batch order, and of the document order unless `data_seed` is set."""
    data_seed: int | None = None
    """Seed of the document order; None: `seed`. A sweep fixes it so that every seed trains on the same tokens."""
    device: str = "cpu"
    """Torch device."""
    options: tuple[str, ...] = ()
    """Architecture settings as `name=value` (`--set`), validated against the architecture's options."""
    max_windows_per_document: int = 2
    """Windows cut from one document at most (the offline corpus gives about 330k tokens at 2, millions at 64)."""
    activations: Literal["disk", "stream"] = "disk"
    """How the shared loop gets activations: `disk`, a cache computed once per model, hook, data and window count
    and reused by every later job with the same ones (memory-mapped); `stream`, computed into a refreshed buffer
    while training (no disk, the model runs every step)."""
    activation_cache_dir: Path | None = None
    """Root of the activation caches; None: $TSAE_EVALS_ACTIVATION_CACHE, else `activations/` in the cache dir."""
    checkpoints: bool = True
    """Save checkpoints into `<out>.checkpoints/`: phased trainers at the end of every phase, sae-lens's trainer
    at a third and two thirds of training."""


def training_architectures() -> dict[str, TrainingArchitecture]:
    """Every architecture `train` knows, by `--arch` name."""
    return TRAINING_ARCHITECTURES


def train(request: TrainRequest, model_loader: Callable[[str, str], Any] | None = None) -> Path:
    """Train (or build) the SAE, then write it atomically to `request.out`; returns that path."""
    import torch

    from tsae_evals.models import check_device, load_model

    architectures = training_architectures()
    if request.arch not in architectures:
        raise unknown_name(
            "architecture", request.arch, architectures, f"use one of {', '.join(sorted(architectures))}"
        )
    architecture = architectures[request.arch]
    options = parse_options(architecture, request.options)
    if request.tokens < request.batch_size_tokens:
        raise UsageError(
            f"--tokens {request.tokens} is less than one batch", f"train on at least {request.batch_size_tokens} tokens"
        )
    check_device(request.device)
    with quiet_libraries():
        model = (model_loader or load_model)(request.model, request.device)
        if not 0 <= request.layer < model.cfg.n_layers:
            raise UsageError(f"layer {request.layer} does not exist", f"pick a layer in 0..{model.cfg.n_layers - 1}")
        torch.manual_seed(request.seed)
        started = time.perf_counter()
        job: TrainingJob = ModelTrainingJob(request, model, f"blocks.{request.layer}.hook_resid_post")
        try:
            sae = architecture.trainer(job, options)
        except RecipeError as exc:
            raise UsageError(exc.problem, exc.fix) from exc
        metadata = sae.cfg.metadata
        metadata.training_tokens = request.tokens
        metadata.tsae_arch = request.arch
        metadata.training_seed = request.seed
        metadata.training_data_seed = request.seed if request.data_seed is None else request.data_seed
        metadata.training_max_windows_per_document = request.max_windows_per_document
        metadata.training_options = options.model_dump(mode="json")
        metadata.training_wall_time_s = round(time.perf_counter() - started, 1)
        with atomic_directory(request.out) as staging:
            # sae-lens training SAEs convert to their inference class on save; inference SAEs save as they are.
            save = getattr(sae, "save_inference_model", None) or sae.save_model
            save(str(staging))
    return request.out
