"""Activations for sequence-aware training: whole windows in document order, never shuffled tokens."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class SequenceActivations:
    """Hook activations of whole token windows, each from one document, position order kept."""

    activations: torch.Tensor
    """`[n_windows, seq, d_in]` in bfloat16: half the memory, float32's range (BOS rows are huge). BOS rows stay in."""
    mask: torch.Tensor
    """`[n_windows, seq]` bool: positions that count in losses (text tokens; BOS excluded)."""
    scale: float
    """sqrt(d_in) / mean |x| over counted positions: the factor that makes inputs sae-lens-normalised."""

    @property
    def n_windows(self) -> int:
        return int(self.activations.shape[0])

    @property
    def tokens_per_window(self) -> int:
        return int(self.mask[0].sum())

    def batches(self, batch_windows: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless `(x [b, seq, d_in] float32, mask [b, seq])`, whole windows, a fresh seeded window order per epoch."""
        if batch_windows > self.n_windows:
            raise ValueError(f"batch of {batch_windows} windows but only {self.n_windows} collected")
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(self.n_windows, generator=generator)
            for start in range(0, self.n_windows - batch_windows + 1, batch_windows):
                rows = order[start : start + batch_windows]
                yield self.activations[rows].float(), self.mask[rows]


def collect_sequence_activations(
    model: Any, hook_name: str, tokens: torch.Tensor, first_text_position: int, batch_size: int = 16
) -> SequenceActivations:
    """Run the model up to the hook on every window once; the training then cycles over these activations."""
    from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

    stop_at_layer = extract_stop_at_layer_from_tlens_hook_name(hook_name)
    chunks = []
    with torch.no_grad():
        for start in tqdm(range(0, tokens.shape[0], batch_size), desc="activations", unit="batch"):
            batch = tokens[start : start + batch_size].to(model.cfg.device)
            _, cache = model.run_with_cache(
                batch, names_filter=[hook_name], stop_at_layer=stop_at_layer, prepend_bos=False
            )
            activation = cache[hook_name]
            chunks.append(activation.reshape(*activation.shape[:2], -1).to("cpu", torch.bfloat16))
    activations = torch.cat(chunks)
    mask = torch.zeros(activations.shape[:2], dtype=torch.bool)
    mask[:, first_text_position:] = True
    mean_norm = activations[mask].float().norm(dim=-1).mean().item()
    return SequenceActivations(activations, mask, scale=math.sqrt(activations.shape[-1]) / mean_norm)
