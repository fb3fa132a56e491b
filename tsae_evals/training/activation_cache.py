"""The activation cache on disk: hook activations of whole windows, computed once per (model weights, hook,
dataset, document order, context, BOS, windows per document) and shared by every SAE trained on them.

Windows are cut in a fixed order, so the first N windows of a larger cache are exactly the windows a request for
N would cut: a cache of at least N windows with the same key serves any request for N.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from custom_saes.training.activations import DiskSequenceActivations
    from tsae_evals.data import Documents

CHUNK_WINDOWS = 256
"""Windows per shard (256 x 128 x 576 float32: 75 MB): what is in memory while the cache is written."""


def cache_key(
    model: Any, hook_name: str, documents: Documents, *, context_size: int, per_document: int
) -> dict[str, Any]:
    """Everything that decides the activations of window i (not the number of windows)."""
    from tsae_evals.models import model_fingerprint

    return {
        "model": model_fingerprint(model),
        "hook_name": hook_name,
        "dataset": documents.source,
        "document_seed": documents.seed,
        "n_documents": len(documents.texts),
        "context_size": context_size,
        "prepend_bos": True,
        "max_windows_per_document": per_document,
        "dtype": "float32",
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def find_cache(root: Path, key: dict[str, Any], n_windows: int) -> Path | None:
    """The smallest complete cache under `root` with this key and at least `n_windows` windows."""
    from custom_saes.training.activations import SIDECAR

    candidates = []
    for path in root.glob(f"{key_digest(key)}-*w"):
        sidecar = path / SIDECAR
        if sidecar.is_file():
            info = json.loads(sidecar.read_text())
            if info.get("key") == key and info["n_windows"] >= n_windows:
                candidates.append((info["n_windows"], path))
    return min(candidates)[1] if candidates else None


def cached_activations(
    model: Any,
    hook_name: str,
    documents: Documents,
    *,
    n_windows: int,
    context_size: int,
    per_document: int,
    root: Path,
    batch_size: int = 16,
) -> DiskSequenceActivations:
    """The first `n_windows` windows' activations, from the cache under `root` (written first if missing)."""
    from custom_saes.training.activations import DiskSequenceActivations, write_activation_cache

    key = cache_key(model, hook_name, documents, context_size=context_size, per_document=per_document)
    found = find_cache(root, key, n_windows)
    if found is None:
        _check_enough_windows(model.tokenizer, documents, n_windows, context_size, per_document)
        found = root / f"{key_digest(key)}-{n_windows}w"
        # A staging folder of our own: two jobs filling the same cache at once (a sweep beside a train) must not
        # delete each other's shards; the first to finish wins and the other's copy is dropped.
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{found.name}.", dir=root)) / "cache"
        chunks = _activation_chunks(model, hook_name, documents, n_windows, context_size, per_document, batch_size)
        try:
            write_activation_cache(staging, chunks, hook_name=hook_name, first_text_position=1, key=key)
            with contextlib.suppress(OSError):  # already there: another job finished the same cache first
                staging.rename(found)
        finally:
            shutil.rmtree(staging.parent, ignore_errors=True)
    return DiskSequenceActivations(found, n_windows=n_windows)


def _check_enough_windows(
    tokenizer: Any, documents: Documents, n_windows: int, context_size: int, per_document: int
) -> None:
    """Tokenise ahead (cheap next to the model) so that a short dataset fails before any activation is computed."""
    from tsae_evals.data.windows import iter_windows, too_few_windows

    windows = iter_windows(tokenizer, documents, context_size=context_size, max_windows_per_document=per_document)
    found = sum(1 for _ in itertools.islice(windows, n_windows))
    if found < n_windows:
        raise too_few_windows(documents.source, found, n_windows, context_size, per_document)


def _activation_chunks(
    model: Any,
    hook_name: str,
    documents: Documents,
    n_windows: int,
    context_size: int,
    per_document: int,
    batch_size: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    import torch
    from tqdm.auto import tqdm

    from custom_saes.training.activations import hook_activations

    bar = tqdm(total=n_windows * context_size, desc="caching activations", unit="tok", unit_scale=True)
    try:
        for tokens in token_chunks(model.tokenizer, documents, n_windows, context_size, per_document):
            activations = torch.cat(list(hook_activations(model, hook_name, tokens, batch_size, torch.float32)))
            bar.update(tokens.numel())
            yield activations, tokens
    finally:
        bar.close()


def token_chunks(
    tokenizer: Any,
    documents: Documents,
    n_windows: int | None,
    context_size: int,
    per_document: int,
    chunk_windows: int = CHUNK_WINDOWS,
) -> Iterator[torch.Tensor]:
    """Token windows `[<= chunk_windows, context_size]` in document order: `n_windows` in all (an error when the
    documents give fewer), or, with None, every window the documents give."""
    import torch

    from tsae_evals.data.windows import iter_windows, too_few_windows

    rows: list[list[int]] = []
    produced = 0
    for row in iter_windows(tokenizer, documents, context_size=context_size, max_windows_per_document=per_document):
        rows.append(row)
        produced += 1
        if len(rows) == chunk_windows or produced == n_windows:
            yield torch.tensor(rows, dtype=torch.long)
            rows = []
        if produced == n_windows:
            return
    if rows:
        yield torch.tensor(rows, dtype=torch.long)
    if n_windows is not None:
        raise too_few_windows(documents.source, produced, n_windows, context_size, per_document)


def windows_for_tokens(tokens: int, context_size: int) -> int:
    """Windows holding `tokens` counted (non-BOS) tokens."""
    return max(2, math.ceil(tokens / (context_size - 1)))
