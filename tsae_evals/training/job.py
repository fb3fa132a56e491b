"""The job a recipe gets from `train`: the request, the model, the hook, and lazily built windows and activations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sae_lens.saes.sae import SAEMetadata

    from custom_saes.base import TsaeSAE
    from custom_saes.training.activations import SequenceActivations
    from custom_saes.training.loop import Phase
    from tsae_evals.data import TokenWindows
    from tsae_evals.training import TrainRequest

S = TypeVar("S", bound="TsaeSAE[Any]")

MAX_CACHED_TOKENS = 400_000
"""Phased training keeps this many tokens of activations in memory (bfloat16: ~460 MB at d_model 576) and
cycles over them when --tokens is larger."""


def checkpoint_dir(out: Path) -> Path:
    """Where checkpoints of `out` go: a sibling directory `<out>.checkpoints`."""
    return out.with_name(out.name + ".checkpoints")


class ModelTrainingJob:
    """custom_saes.training.registry.TrainingJob on a language model's activations at one hook."""

    def __init__(self, request: TrainRequest, model: Any, hook_name: str) -> None:
        self.request = request
        self.model = model
        self.hook_name = hook_name
        self.d_in = int(model.cfg.d_model)
        self._documents: Any = None
        self._activations: SequenceActivations | None = None

    @property
    def d_sae(self) -> int:
        return self.d_in * self.request.expansion

    @property
    def k(self) -> int:
        return self.request.k

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def checkpoint_dir(self) -> Path | None:
        """Where checkpoints go; None when the request turned them off."""
        return checkpoint_dir(self.request.out) if self.request.checkpoints else None

    def l1(self, default: float) -> float:
        """--l1 when given, else the architecture's `default`."""
        return default if self.request.l1_coefficient is None else self.request.l1_coefficient

    def windows(self, n_windows: int) -> TokenWindows:
        """`n_windows` windows of `context_size` tokens, one document each, in the seeded document order."""
        from tsae_evals.data import load_documents, make_windows

        if self._documents is None:
            self._documents = load_documents(self.request.dataset, seed=self.request.seed, max_documents=10**6)
        return make_windows(
            self.model.tokenizer, self._documents, context_size=self.request.context_size, n_windows=n_windows
        )

    def sequence_activations(self) -> SequenceActivations:
        """Hook activations of whole windows for up to MAX_CACHED_TOKENS tokens, computed once per job."""
        from custom_saes.training.activations import collect_sequence_activations

        if self._activations is None:
            per_window = self.request.context_size - 1
            unique_tokens = min(self.request.tokens, MAX_CACHED_TOKENS)
            windows = self.windows(max(2, math.ceil(unique_tokens / per_window)))
            self._activations = collect_sequence_activations(
                self.model, self.hook_name, windows.tokens, windows.first_text_position
            )
        return self._activations

    def metadata(self, **extra: Any) -> SAEMetadata:
        """sae-lens metadata every SAE we save carries (hook, model, context, BOS), plus `extra`."""
        from sae_lens.saes.sae import SAEMetadata

        return SAEMetadata(
            hook_name=self.hook_name,
            hook_head_index=None,
            model_name=self.request.model,
            context_size=self.request.context_size,
            prepend_bos=True,
            dataset_path=self.request.dataset,
            **extra,
        )

    def train_phased(self, sae: S, phases: list[Phase]) -> S:
        """Run the shared phased loop on this job's sequence activations; checkpoints beside `--out`."""
        from custom_saes.training.loop import train_in_phases

        request = self.request
        per_window = request.context_size - 1
        sae.to(request.device)
        history = train_in_phases(
            sae,
            phases,
            self.sequence_activations(),
            tokens=request.tokens,
            lr=request.lr,
            batch_windows=max(1, request.batch_size_tokens // per_window),
            seed=request.seed,
            checkpoint_dir=self.checkpoint_dir,
        )
        sae.cfg.metadata.training_log = history.rows
        return sae.to("cpu")
