"""What an eval receives: the model, the SAE, its hook and the token windows, plus one way to stream activations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE, HookedSAETransformer

    from tsae_evals.data import TokenWindows
    from tsae_evals.saes import SAERef


@dataclass(frozen=True)
class RunShape:
    """What a run will hand an eval, known before any model loads: enough to refuse a config that cannot run."""

    n_windows: int
    """Token windows the run cuts."""
    context_size: int
    """Tokens per window, BOS included."""
    prepend_bos: bool
    """Whether each window starts with BOS."""
    model_name: str = ""
    """The model the SAE will run on (as `--model` or the SAE's config names it)."""
    architecture: str = ""
    """The SAE's architecture id (`cfg.architecture()`), for evals that only apply to one kind of SAE."""

    @property
    def first_text_position(self) -> int:
        return 1 if self.prepend_bos else 0

    def scored_start(self, skip_first_positions: int) -> int:
        """First position temporal metrics score: after BOS and `skip_first_positions` more; at least 2 remain."""
        from tsae_evals.errors import UsageError

        start = self.first_text_position + skip_first_positions
        if start >= self.context_size - 2:
            raise UsageError(
                f"skip_first_positions={skip_first_positions} leaves fewer than 2 positions per window",
                "lower skip_first_positions or raise --context-size",
            )
        return start


@dataclass(frozen=True)
class EncodedBatch:
    """Whole windows after one model forward to the hook and one SAE encode/decode, shared by streaming evals."""

    activations: torch.Tensor
    """Hook activations `[b, seq, d_in]`, BOS position included."""
    latents: torch.Tensor
    """`sae.encode` of the whole windows (sequence-aware SAEs see BOS as context)."""
    reconstruction: torch.Tensor
    """`sae.decode(latents)`."""

    @classmethod
    def encode(cls, sae: SAE[Any], activations: torch.Tensor) -> EncodedBatch:
        import torch

        with torch.no_grad():
            latents = sae.encode(activations)
            return cls(activations, latents, sae.decode(latents))

    def limited(self, n_windows: int) -> EncodedBatch:
        """The first `n_windows` windows of this batch."""
        return EncodedBatch(self.activations[:n_windows], self.latents[:n_windows], self.reconstruction[:n_windows])

    def from_position(self, start: int) -> EncodedBatch:
        """Positions `start:` of every window."""
        return EncodedBatch(self.activations[:, start:], self.latents[:, start:], self.reconstruction[:, start:])


@dataclass
class ScoredPositionsScorer:
    """A streaming eval's scorer that sees only the scored positions of each window (BOS and skipped ones cut)."""

    n_windows: int | None
    """Windows it wants (None: all of the run's)."""
    start: int
    """First scored position (EvalContext.scored_start)."""
    add_scored: Callable[[EncodedBatch], None]
    """Takes each batch, already cut to the scored positions."""
    finish: Callable[[], Any]
    """Returns the eval's result."""

    def add(self, batch: EncodedBatch) -> None:
        self.add_scored(batch.from_position(self.start))


def run_to_hooks(
    model: HookedSAETransformer, tokens: torch.Tensor, hooks: list[str], device: str
) -> dict[str, torch.Tensor]:
    """Activations `[batch, seq, width]` of every hook in `hooks` from one forward that stops after the deepest
    one's layer (attention heads flattened into the width). The one place evals run the model to a hook."""
    import torch
    from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

    stops = [extract_stop_at_layer_from_tlens_hook_name(hook) for hook in hooks]
    # None means the hook sits after the last block: the whole model must run.
    stop = None if any(layer is None for layer in stops) else max(layer for layer in stops if layer is not None)
    with torch.no_grad():
        _, cache = model.run_with_cache(
            tokens.to(device), names_filter=list(hooks), stop_at_layer=stop, prepend_bos=False
        )
    return {hook: cache[hook].reshape(*cache[hook].shape[:2], -1) for hook in hooks}


def default_artifacts_dir() -> Path:
    """`artifacts/` under the tsae_evals cache (never the working directory, never inside an installed package)."""
    from tsae_evals.models import cache_dir

    return cache_dir() / "artifacts"


@dataclass
class EvalContext:
    """Everything an eval may use; evals never load models, SAEs or data themselves."""

    model: HookedSAETransformer
    """The language model, already on `device`."""
    sae: SAE[Any]
    """The SAE under evaluation, in eval mode."""
    sae_ref: SAERef
    """Where the SAE came from (release/id or directory)."""
    hook_name: str
    """The model hook the SAE reads and writes."""
    windows: TokenWindows
    """Token windows shared by every eval of this run."""
    seed: int
    """Seed for anything random an eval does (shuffles, baselines)."""
    device: str
    """Torch device of the model and SAE."""
    batch_size: int
    """Windows per model forward."""
    artifacts_dir: Path = field(default_factory=lambda: default_artifacts_dir())
    """Where evals cache what they may reuse across SAEs and runs (SAE-Bench's activations, probes, vocab scans)."""

    def hook_activations(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hook activations `[batch, seq, d_in]` for `tokens`, running the model only up to the hook's layer."""
        return run_to_hooks(self.model, tokens, [self.hook_name], self.device)[self.hook_name]

    @property
    def run_shape(self) -> RunShape:
        """The shape of this run's windows, as evals' `check` functions see it."""
        return RunShape(
            self.windows.n_windows,
            self.windows.context_size,
            self.windows.prepend_bos,
            str(self.model.cfg.model_name),
            self.sae.cfg.architecture(),
        )

    def scored_start(self, skip_first_positions: int) -> int:
        """First position temporal metrics score (see RunShape.scored_start)."""
        return self.run_shape.scored_start(skip_first_positions)

    def encoded_batches(self, n_windows: int | None = None) -> Iterator[EncodedBatch]:
        """One model forward and one SAE pass per batch over the first `n_windows` windows."""
        for _, activations in self.iter_activation_batches(n_windows):
            yield EncodedBatch.encode(self.sae, activations)

    def iter_activation_batches(self, n_windows: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield `(tokens [b, seq], activations [b, seq, d_in])` over the first `n_windows` windows."""
        tokens = self.windows.tokens[: n_windows or self.windows.n_windows]
        for start in range(0, tokens.shape[0], self.batch_size):
            batch = tokens[start : start + self.batch_size]
            yield batch, self.hook_activations(batch)
