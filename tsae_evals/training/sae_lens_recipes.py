"""relu, topk and batchtopk: sae-lens's own SAE classes, runner and trainer, fed our windows and our model."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from custom_saes.training.registry import NoOptions, register_training_architecture

if TYPE_CHECKING:
    from sae_lens import SAE
    from sae_lens.saes.sae import TrainingSAEConfig

    from tsae_evals.training.job import ModelTrainingJob

SAE_LENS_L1 = 5.0
"""Default L1 of sae-lens's ReLU SAE (it penalises |f| x decoder norm, decoder rows start at norm 0.1)."""


@register_training_architecture("relu")
def train_relu(job: ModelTrainingJob, _options: NoOptions) -> SAE[Any]:
    """sae-lens ReLU SAE ("standard") with an L1 penalty (--l1), sae-lens's own trainer."""
    from sae_lens import StandardTrainingSAEConfig

    return train_with_sae_lens(
        job,
        StandardTrainingSAEConfig(
            d_in=job.d_in,
            d_sae=job.d_sae,
            l1_coefficient=job.l1(SAE_LENS_L1),
            normalize_activations="expected_average_only_in",
        ),
    )


@register_training_architecture("topk")
def train_topk(job: ModelTrainingJob, _options: NoOptions) -> SAE[Any]:
    """sae-lens TopK SAE (--k), sae-lens's own trainer."""
    from sae_lens import TopKTrainingSAEConfig

    return train_with_sae_lens(
        job,
        TopKTrainingSAEConfig(
            d_in=job.d_in, d_sae=job.d_sae, k=job.k, normalize_activations="expected_average_only_in"
        ),
    )


@register_training_architecture("batchtopk")
def train_batchtopk(job: ModelTrainingJob, _options: NoOptions) -> SAE[Any]:
    """sae-lens BatchTopK SAE (--k; saved as JumpReLU), sae-lens's own trainer."""
    from sae_lens import BatchTopKTrainingSAEConfig

    return train_with_sae_lens(
        job,
        BatchTopKTrainingSAEConfig(
            d_in=job.d_in, d_sae=job.d_sae, k=job.k, normalize_activations="expected_average_only_in"
        ),
    )


def train_with_sae_lens(job: ModelTrainingJob, sae_cfg: TrainingSAEConfig) -> SAE[Any]:
    """sae-lens's runner and trainer on our windows: per-token architectures, shuffled activations."""
    import datasets
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig

    request = job.request
    store_batch, norm_batches = 16, 5
    # sae-lens's mixing buffer holds n_batches_in_buffer * context_size activations and must hold 4 batches.
    n_buffer_batches = math.ceil(4 * request.batch_size_tokens / request.context_size)
    # BOS is excluded from training, so each window gives context_size - 1 activations; the margin covers the
    # norm estimate and the buffer's read-ahead, so no window is seen twice.
    needed_tokens = request.tokens + (norm_batches + 8) * request.batch_size_tokens
    windows = job.windows(math.ceil(needed_tokens / (request.context_size - 1)) + 2 * store_batch)
    checkpoints = job.checkpoint_dir
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=sae_cfg,
        model_name=request.model,
        hook_name=job.hook_name,
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
        # sae-lens appends a run id: checkpoints land in OUT.checkpoints/<id>/<tokens seen>/.
        checkpoint_path=str(checkpoints) if checkpoints else None,
        n_checkpoints=2 if checkpoints else 0,
        verbose=False,
    )
    runner = LanguageModelSAETrainingRunner(
        runner_cfg,
        override_dataset=datasets.Dataset.from_dict({"tokens": windows.tokens.tolist()}),
        override_model=job.model,
    )
    with _progress_with_l0_and_explained_variance():
        return runner.run()


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
                # The losses still carry their graph; read their values only.
                losses = " ".join(
                    f"{name}={float(torch.as_tensor(value() if callable(value) else value).detach()):.3g}"
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
