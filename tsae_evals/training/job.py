"""The job a recipe gets from `train`: the request, the model, the hook, and lazily built windows and activations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch
    from sae_lens.saes.sae import SAEMetadata

    from custom_saes.base import TsaeSAE
    from custom_saes.training.activations import ActivationSource
    from custom_saes.training.loop import Phase
    from tsae_evals.data import Documents, TokenWindows
    from tsae_evals.training import TrainRequest

S = TypeVar("S", bound="TsaeSAE[Any]")

STREAM_BUFFER_BATCHES = 8
"""A streamed job's buffer holds this many batches of windows (mixing windows of neighbouring documents)."""


def activation_cache_root() -> Path:
    """Where activation caches live: `$TSAE_EVALS_ACTIVATION_CACHE`, else `activations/` in the cache directory."""
    from tsae_evals.models import cache_dir

    return Path(os.environ.get("TSAE_EVALS_ACTIVATION_CACHE") or cache_dir() / "activations")


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
        self._activations: ActivationSource | None = None

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
        """`n_windows` windows of `context_size` tokens in the seeded document order (sae-lens's trainer reads these)."""
        from tsae_evals.data import make_windows

        return make_windows(
            self.model.tokenizer,
            self._documents_loaded(),
            context_size=self.request.context_size,
            n_windows=n_windows,
            max_windows_per_document=self.request.max_windows_per_document,
        )

    def sequence_activations(self) -> ActivationSource:
        """Hook activations of whole windows for the job's tokens: read from the disk cache (written first when
        missing), or, with `activations="stream"`, computed into a refreshed buffer as training consumes them."""
        if self._activations is None:
            self._activations = self._stream() if self.request.activations == "stream" else self._cached()
        return self._activations

    def _documents_loaded(self) -> Documents:
        from tsae_evals.data import load_documents

        if self._documents is None:
            request = self.request
            data_seed = request.seed if request.data_seed is None else request.data_seed
            self._documents = load_documents(request.dataset, seed=data_seed, max_documents=10**6)
        return self._documents

    def _cached(self) -> ActivationSource:
        from tsae_evals.training.activation_cache import cached_activations, windows_for_tokens

        request = self.request
        return cached_activations(
            self.model,
            self.hook_name,
            self._documents_loaded(),
            n_windows=windows_for_tokens(request.tokens, request.context_size),
            context_size=request.context_size,
            per_document=request.max_windows_per_document,
            root=request.activation_cache_dir or activation_cache_root(),
        )

    def _stream(self) -> ActivationSource:
        from custom_saes.training.activations import StreamedSequenceActivations, hook_activations
        from tsae_evals.training.activation_cache import token_chunks

        request, documents = self.request, self._documents_loaded()

        def produce() -> Iterator[torch.Tensor]:
            for tokens in token_chunks(
                self.model.tokenizer, documents, None, request.context_size, request.max_windows_per_document
            ):
                yield from hook_activations(self.model, self.hook_name, tokens, batch_size=16)

        return StreamedSequenceActivations(
            produce, first_text_position=1, buffer_windows=STREAM_BUFFER_BATCHES * self.batch_windows
        )

    @property
    def batch_windows(self) -> int:
        """Windows per optimiser step."""
        return max(1, self.request.batch_size_tokens // (self.request.context_size - 1))

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
        sae.to(request.device)
        history = train_in_phases(
            sae,
            phases,
            self.sequence_activations(),
            tokens=request.tokens,
            lr=request.lr,
            batch_windows=self.batch_windows,
            seed=request.seed,
            checkpoint_dir=self.checkpoint_dir,
        )
        sae.cfg.metadata.training_log = history.rows
        return sae.to("cpu")
