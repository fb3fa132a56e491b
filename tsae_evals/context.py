"""What an eval receives: the model, the SAE, its hook and the token windows, plus one way to stream activations."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE, HookedSAETransformer

    from tsae_evals.data import TokenWindows
    from tsae_evals.saes import SAERef


@dataclass(frozen=True)
class EncodedBatch:
    """Whole windows after one model forward to the hook and one SAE encode/decode, shared by streaming evals."""

    activations: torch.Tensor
    """Hook activations `[b, seq, d_in]`, BOS position included."""
    latents: torch.Tensor
    """`sae.encode` of the whole windows (sequence-aware SAEs see BOS as context)."""
    reconstruction: torch.Tensor
    """`sae.decode(latents)`."""

    def limited(self, n_windows: int) -> EncodedBatch:
        """The first `n_windows` windows of this batch."""
        return EncodedBatch(self.activations[:n_windows], self.latents[:n_windows], self.reconstruction[:n_windows])


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

    def hook_activations(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hook activations `[batch, seq, d_in]` for `tokens`, running the model only up to the hook's layer."""
        import torch
        from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

        with torch.no_grad():
            _, cache = self.model.run_with_cache(
                tokens.to(self.device),
                names_filter=[self.hook_name],
                stop_at_layer=extract_stop_at_layer_from_tlens_hook_name(self.hook_name),
                prepend_bos=False,
            )
        activations = cache[self.hook_name]
        return activations.reshape(*activations.shape[:2], -1)

    def scored_start(self, skip_first_positions: int) -> int:
        """First position temporal metrics score: after BOS and `skip_first_positions` more; at least 2 remain."""
        from tsae_evals.errors import UsageError

        start = self.windows.first_text_position + skip_first_positions
        if start >= self.windows.context_size - 2:
            raise UsageError(
                f"skip_first_positions={skip_first_positions} leaves fewer than 2 positions per window",
                "lower skip_first_positions or raise --context-size",
            )
        return start

    def encoded_batches(self, n_windows: int | None = None) -> Iterator[EncodedBatch]:
        """One model forward and one SAE pass per batch over the first `n_windows` windows."""
        import torch

        for _, activations in self.iter_activation_batches(n_windows):
            with torch.no_grad():
                latents = self.sae.encode(activations)
                reconstruction = self.sae.decode(latents)
            yield EncodedBatch(activations, latents, reconstruction)

    def iter_activation_batches(self, n_windows: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield `(tokens [b, seq], activations [b, seq, d_in])` over the first `n_windows` windows."""
        tokens = self.windows.tokens[: n_windows or self.windows.n_windows]
        for start in range(0, tokens.shape[0], self.batch_size):
            batch = tokens[start : start + self.batch_size]
            yield batch, self.hook_activations(batch)
