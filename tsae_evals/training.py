"""Train an SAE with sae-lens's own runner and trainer, on our model's activations and our token windows, on CPU."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsae_evals.data.documents import DEFAULT_DATASET
from tsae_evals.errors import UsageError
from tsae_evals.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from sae_lens.saes.sae import TrainingSAEConfig


@dataclass(frozen=True)
class TrainRequest:
    """One `train` invocation."""

    arch: str
    """Architecture id (see TRAINING_ARCHITECTURES)."""
    layer: int
    """Residual stream layer: the SAE reads blocks.{layer}.hook_resid_post."""
    tokens: int
    """Training activations (tokens) to consume."""
    out: Path
    """Directory to write the sae-lens SAE to."""
    expansion: int = 4
    """d_sae = expansion * d_model."""
    l1_coefficient: float = 5.0
    """Sparsity penalty for ReLU SAEs (sae-lens scales it by decoder norms; activations are normalised)."""
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
    """Seed of document order, SAE initialisation and activation shuffling."""
    device: str = "cpu"
    """Torch device."""


TrainingConfigBuilder = Callable[[TrainRequest, int], "TrainingSAEConfig"]
TRAINING_ARCHITECTURES: dict[str, TrainingConfigBuilder] = {}


def register_training_architecture(name: str) -> Callable[[TrainingConfigBuilder], TrainingConfigBuilder]:
    """Register a builder `(request, d_in) -> sae-lens TrainingSAEConfig` under `--arch name`."""

    def decorate(builder: TrainingConfigBuilder) -> TrainingConfigBuilder:
        if name in TRAINING_ARCHITECTURES:
            raise ValueError(f"training architecture {name!r} is already registered")
        TRAINING_ARCHITECTURES[name] = builder
        return builder

    return decorate


@register_training_architecture("relu")
def _relu(request: TrainRequest, d_in: int) -> TrainingSAEConfig:
    from sae_lens import StandardTrainingSAEConfig

    return StandardTrainingSAEConfig(
        d_in=d_in,
        d_sae=d_in * request.expansion,
        l1_coefficient=request.l1_coefficient,
        normalize_activations="expected_average_only_in",
    )


@register_training_architecture("topk")
def _topk(request: TrainRequest, d_in: int) -> TrainingSAEConfig:
    from sae_lens import TopKTrainingSAEConfig

    return TopKTrainingSAEConfig(
        d_in=d_in, d_sae=d_in * request.expansion, k=request.k, normalize_activations="expected_average_only_in"
    )


@register_training_architecture("batchtopk")
def _batchtopk(request: TrainRequest, d_in: int) -> TrainingSAEConfig:
    from sae_lens import BatchTopKTrainingSAEConfig

    return BatchTopKTrainingSAEConfig(
        d_in=d_in, d_sae=d_in * request.expansion, k=request.k, normalize_activations="expected_average_only_in"
    )


def train(request: TrainRequest) -> Path:
    """Train, then write the SAE atomically to `request.out`; returns that path."""
    import datasets
    import torch
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig

    from tsae_evals.data import load_documents, make_windows
    from tsae_evals.models import load_model

    if request.arch not in TRAINING_ARCHITECTURES:
        import difflib

        close = difflib.get_close_matches(request.arch, list(TRAINING_ARCHITECTURES), n=3, cutoff=0.4)
        raise UsageError(
            f"unknown architecture {request.arch!r}",
            f"use one of {', '.join(sorted(TRAINING_ARCHITECTURES))}"
            + (f" (did you mean {close[0]}?)" if close else ""),
        )
    if request.tokens < request.batch_size_tokens:
        raise UsageError(
            f"--tokens {request.tokens} is less than one batch", f"train on at least {request.batch_size_tokens} tokens"
        )
    model = load_model(request.model, request.device)
    if not 0 <= request.layer < model.cfg.n_layers:
        raise UsageError(f"layer {request.layer} does not exist", f"pick a layer in 0..{model.cfg.n_layers - 1}")
    hook_name = f"blocks.{request.layer}.hook_resid_post"
    torch.manual_seed(request.seed)

    store_batch, norm_batches = 16, 5
    # sae-lens's mixing buffer holds n_batches_in_buffer * context_size activations and must hold 4 batches.
    n_buffer_batches = math.ceil(4 * request.batch_size_tokens / request.context_size)
    # BOS is excluded from training, so each window gives context_size - 1 activations; the margin covers the
    # norm estimate and the buffer's read-ahead, so no window is seen twice.
    needed_tokens = request.tokens + (norm_batches + 8) * request.batch_size_tokens
    n_windows = math.ceil(needed_tokens / (request.context_size - 1)) + 2 * store_batch
    documents = load_documents(request.dataset, seed=request.seed, max_documents=10**6)
    windows = make_windows(model.tokenizer, documents, context_size=request.context_size, n_windows=n_windows)

    sae_cfg = TRAINING_ARCHITECTURES[request.arch](request, model.cfg.d_model)
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=sae_cfg,
        model_name=request.model,
        hook_name=hook_name,
        dataset_path=request.dataset,
        is_dataset_tokenized=True,
        streaming=False,
        context_size=request.context_size,
        prepend_bos=True,
        exclude_special_tokens=True,
        training_tokens=request.tokens,
        train_batch_size_tokens=request.batch_size_tokens,
        store_batch_size_prompts=store_batch,
        n_batches_in_buffer=n_buffer_batches,
        n_batches_for_norm_estimate=norm_batches,
        lr=request.lr,
        lr_warm_up_steps=max(1, request.tokens // request.batch_size_tokens // 20),
        seed=request.seed,
        device=request.device,
        logger=LoggingConfig(log_to_wandb=False),
        output_path=None,
        checkpoint_path=None,
        n_checkpoints=0,
        verbose=False,
    )
    runner = LanguageModelSAETrainingRunner(
        runner_cfg,
        override_dataset=datasets.Dataset.from_dict({"tokens": windows.tokens.tolist()}),
        override_model=model,
    )
    started = time.perf_counter()
    with _progress_with_l0_and_explained_variance():
        sae = runner.run()
    sae.cfg.metadata.training_tokens = request.tokens
    sae.cfg.metadata.tsae_arch = request.arch
    sae.cfg.metadata.training_seed = request.seed
    sae.cfg.metadata.training_wall_time_s = round(time.perf_counter() - started, 1)
    _save_atomically(sae, request.out)
    return request.out


@contextmanager
def _progress_with_l0_and_explained_variance(every_steps: int = 10) -> Iterator[None]:
    """Make sae-lens's progress bar update every few steps and show L0 and explained variance beside the losses.

    sae-lens refreshes its bar every 100 steps and shows only losses: on CPU that is minutes without a sign of
    life, and losses alone do not say whether the SAE is becoming sparse or faithful.
    """
    import torch
    from sae_lens import llm_sae_training_runner
    from sae_lens.training.sae_trainer import SAETrainer

    class ReportingTrainer(SAETrainer):  # type: ignore[misc]
        def _update_pbar(self, step_output: Any, pbar: Any, update_interval: int = 100) -> None:
            if self.n_training_steps % every_steps:
                return
            with torch.no_grad():
                sae_in, sae_out = step_output.sae_in.float(), step_output.sae_out.float()
                l0 = float((step_output.feature_acts > 0).float().sum(-1).mean())
                variance = (sae_in - sae_in.mean(0)).pow(2).sum()
                explained = float(1 - (sae_in - sae_out).pow(2).sum() / variance)
            losses = " ".join(
                f"{name}={float(value() if callable(value) else value):.3g}"
                for name, value in step_output.losses.items()
            )
            pbar.set_description(f"step {self.n_training_steps} {losses} L0={l0:.1f} EV={explained:.3f}")
            pbar.update(min(self.n_training_samples, pbar.total) - pbar.n)

    original = llm_sae_training_runner.SAETrainer
    llm_sae_training_runner.SAETrainer = ReportingTrainer
    try:
        yield
    finally:
        llm_sae_training_runner.SAETrainer = original


def _scalar(value: Any) -> float:
    value = value() if callable(value) else value
    return float(value.item()) if hasattr(value, "item") else float(value)


def _save_atomically(sae: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        sae.save_inference_model(str(staging))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
