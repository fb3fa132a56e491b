"""Activations for sequence-aware training: whole windows in document order, never shuffled tokens.

Three sources serve the loop the same way (`batches` of whole windows, `scale`, `sample`):
- `SequenceActivations`: a tensor in memory (tests);
- `DiskSequenceActivations`: an activation cache on disk in sae-lens's cached-activations layout (a Hugging Face
  dataset, one row per window: the hook's `[context_size, d_in]` activations and the `token_ids`), memory-mapped,
  so memory stays flat however many tokens it holds;
- `StreamedSequenceActivations`: windows computed on the fly into a refreshed buffer (no disk), for token budgets
  too large to cache.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

SIDECAR = "tsae_activations.json"
"""Our description of a cache directory (scale, BOS, key); sae-lens's loader ignores it."""


class ActivationSource(Protocol):
    """What the training loop reads."""

    @property
    def scale(self) -> float:
        """sqrt(d_in) / mean |x| over counted positions: the factor that makes inputs sae-lens-normalised."""

    @property
    def n_windows(self) -> int:
        """Windows one pass serves (for a stream: its buffer)."""

    @property
    def tokens_per_window(self) -> int:
        """Counted (non-BOS) positions per window."""

    def batches(self, batch_windows: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless `(x [b, seq, d_in] float32, mask [b, seq] bool)`: whole windows, order within each kept."""

    def sample(self, n_tokens: int) -> torch.Tensor:
        """Up to `n_tokens` activations of counted positions `[n, d_in]`, float32 (for data-built baselines)."""


def _mask(n_windows: int, seq: int, first_text_position: int) -> torch.Tensor:
    mask = torch.zeros(n_windows, seq, dtype=torch.bool)
    mask[:, first_text_position:] = True
    return mask


def _scale(sum_of_norms: float, count: int, d_in: int) -> float:
    return math.sqrt(d_in) / (sum_of_norms / max(1, count))


@dataclass(frozen=True)
class SequenceActivations:
    """Hook activations of whole token windows held in memory, each from one document, position order kept."""

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
        """Endless batches of whole windows, a fresh seeded window order per epoch."""
        for rows in _epoch_rows(self.n_windows, batch_windows, seed):
            yield self.activations[rows].float(), self.mask[rows]

    def sample(self, n_tokens: int) -> torch.Tensor:
        return self.activations[self.mask][:n_tokens].float()


def _epoch_rows(n_windows: int, batch_windows: int, seed: int) -> Iterator[torch.Tensor]:
    if batch_windows > n_windows:
        raise ValueError(f"batch of {batch_windows} windows but only {n_windows} collected")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n_windows, generator=generator)
        for start in range(0, n_windows - batch_windows + 1, batch_windows):
            yield order[start : start + batch_windows]


class DiskSequenceActivations:
    """A cache directory written by `write_activation_cache`, read window by window (memory-mapped)."""

    def __init__(self, path: Path, n_windows: int | None = None) -> None:
        import datasets

        self.path = path
        self.info = json.loads((path / SIDECAR).read_text())
        self.hook_name: str = self.info["hook_name"]
        dataset = datasets.load_from_disk(str(path))
        available = len(dataset)
        if n_windows is not None and n_windows > available:
            raise ValueError(f"cache {path} holds {available} windows, {n_windows} asked for")
        self._dataset = dataset.with_format("numpy", columns=[self.hook_name])
        self._n_windows = available if n_windows is None else n_windows
        self._first_text_position = int(self.info["first_text_position"])
        self._scale = float(self.info["scale"])

    @property
    def scale(self) -> float:
        return self._scale

    @property
    def n_windows(self) -> int:
        return self._n_windows

    @property
    def tokens_per_window(self) -> int:
        return int(self.info["context_size"]) - self._first_text_position

    def windows(self, rows: torch.Tensor) -> torch.Tensor:
        """Activations of the given windows `[len(rows), seq, d_in]`, float32."""
        ordered = sorted(int(r) for r in rows)
        array = self._dataset[ordered][self.hook_name]
        stacked = torch.from_numpy(array).float()
        # Back to the requested order: batches are drawn in a seeded random order.
        position = {row: index for index, row in enumerate(ordered)}
        return stacked[[position[int(r)] for r in rows]]

    def batches(self, batch_windows: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches of whole windows, a fresh seeded window order per epoch."""
        mask = _mask(batch_windows, int(self.info["context_size"]), self._first_text_position)
        for rows in _epoch_rows(self.n_windows, batch_windows, seed):
            yield self.windows(rows), mask

    def sample(self, n_tokens: int) -> torch.Tensor:
        needed = min(self.n_windows, math.ceil(n_tokens / self.tokens_per_window))
        x = self.windows(torch.arange(needed))[:, self._first_text_position :]
        return x.reshape(-1, x.shape[-1])[:n_tokens]


def write_activation_cache(
    path: Path,
    chunks: Iterator[tuple[torch.Tensor, torch.Tensor]],
    *,
    hook_name: str,
    first_text_position: int,
    key: dict[str, Any],
) -> None:
    """Write `(activations [b, seq, d_in], token_ids [b, seq])` chunks into `path` (which must not exist) in
    sae-lens's cached-activations layout, one shard per chunk, then consolidated by sae-lens's own code."""
    import datasets
    from sae_lens.cache_activations_runner import CacheActivationsRunner

    shards = path.parent / f"{path.name}.shards"
    shards.mkdir(parents=True)
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # one "Saving the dataset" bar per shard would bury the caching bar
    try:
        info = _write_shards(shards, chunks, hook_name, first_text_position)
        path.mkdir()
        CacheActivationsRunner._consolidate_shards(shards, path, copy_files=False)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    (path / SIDECAR).write_text(json.dumps({**info, "key": key}, indent=2))


def _write_shards(
    shards: Path, chunks: Iterator[tuple[torch.Tensor, torch.Tensor]], hook_name: str, first_text_position: int
) -> dict[str, Any]:
    import datasets

    sum_of_norms, count, n_windows, shape = 0.0, 0, 0, None
    for index, (activations, token_ids) in enumerate(chunks):
        shape = tuple(activations.shape[1:])
        features = datasets.Features(
            {
                hook_name: datasets.Array2D(shape=shape, dtype="float32"),
                "token_ids": datasets.Sequence(datasets.Value("int32"), length=shape[0]),
            }
        )
        counted = activations[:, first_text_position:].float()
        sum_of_norms += float(counted.norm(dim=-1).sum())
        count += counted.shape[0] * counted.shape[1]
        n_windows += activations.shape[0]
        shard = datasets.Dataset.from_dict(
            {hook_name: activations.float().numpy(), "token_ids": token_ids.to(torch.int32).numpy()},
            features=features,
        )
        shard.save_to_disk(str(shards / f"shard_{index:05d}"))
    if shape is None:
        raise ValueError("no activations to cache")
    return {
        "hook_name": hook_name,
        "context_size": shape[0],
        "d_in": shape[1],
        "first_text_position": first_text_position,
        "n_windows": n_windows,
        "scale": _scale(sum_of_norms, count, shape[1]),
    }


class StreamedSequenceActivations:
    """Windows computed on demand into a buffer of `buffer_windows`; batches draw random windows from the buffer
    and each drawn window is replaced by a fresh one, so memory is flat in tokens and neighbouring documents mix.
    The scale is measured on the first buffer."""

    def __init__(
        self,
        produce: Callable[[], Iterator[torch.Tensor]],
        *,
        first_text_position: int,
        buffer_windows: int,
    ) -> None:
        self._produce = produce
        self._first_text_position = first_text_position
        self._buffer_windows = buffer_windows
        self._stream = self._windows()
        self._buffer = torch.stack([next(self._stream) for _ in range(buffer_windows)])
        counted = self._buffer[:, first_text_position:].float()
        self._scale = _scale(float(counted.norm(dim=-1).sum()), counted.shape[0] * counted.shape[1], counted.shape[-1])

    def _windows(self) -> Iterator[torch.Tensor]:
        while True:  # cycles when the text runs out
            produced = False
            for chunk in self._produce():
                for window in chunk.to(torch.bfloat16):
                    produced = True
                    yield window
            if not produced:
                raise ValueError("the window producer yielded nothing")

    @property
    def scale(self) -> float:
        return self._scale

    @property
    def n_windows(self) -> int:
        return self._buffer_windows

    @property
    def tokens_per_window(self) -> int:
        return int(self._buffer.shape[1]) - self._first_text_position

    def batches(self, batch_windows: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if batch_windows > self._buffer_windows:
            raise ValueError(f"batch of {batch_windows} windows but the buffer holds {self._buffer_windows}")
        generator = torch.Generator().manual_seed(seed)
        mask = _mask(batch_windows, int(self._buffer.shape[1]), self._first_text_position)
        while True:
            rows = torch.randperm(self._buffer_windows, generator=generator)[:batch_windows]
            batch = self._buffer[rows].float()
            for row in rows:
                self._buffer[row] = next(self._stream)
            yield batch, mask

    def sample(self, n_tokens: int) -> torch.Tensor:
        x = self._buffer[:, self._first_text_position :].float()
        return x.reshape(-1, x.shape[-1])[:n_tokens]


def hook_activations(
    model: Any, hook_name: str, tokens: torch.Tensor, batch_size: int, dtype: torch.dtype = torch.bfloat16
) -> Iterator[torch.Tensor]:
    """`[b, seq, d_in]` CPU activations of `tokens [n, seq]` at `hook_name`, `batch_size` windows at a time; the
    model stops after the hook's block."""
    from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

    stop_at_layer = extract_stop_at_layer_from_tlens_hook_name(hook_name)
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start : start + batch_size].to(model.cfg.device)
        # no_grad per batch, never around the yield: a generator suspended inside no_grad leaves gradients off in
        # its caller, which silently stopped streamed training from learning.
        with torch.no_grad():
            _, cache = model.run_with_cache(
                batch, names_filter=[hook_name], stop_at_layer=stop_at_layer, prepend_bos=False
            )
            activation = cache[hook_name].reshape(*batch.shape[:2], -1).to("cpu", dtype)
        yield activation
