"""Repeated SAE encodes answered from memory, for SAE-Bench code that encodes the same activations many times.

SAE-Bench's SCR and TPP (`ablated_precomputed_activations`) encode every test batch, decode it, zero some latents
and decode again, once per (ablated class, threshold): the same batch is encoded 14-35 times per SAE and seed, and
those encodes and unablated decodes are two thirds of the eval's own compute. Inside `memoized_encodes` the SAE
answers a repeated encode of the same tensor from memory and the decode of a code it has just handed out (still
unmodified) from memory too; everything else runs for real. The outputs are the very tensors the SAE computed,
so SAE-Bench's numbers are bit-identical (a test checks it) and its code runs unchanged.

A batch is remembered from its second encode on (one-off encodes, such as SAE-Bench's training-set attributions,
never take memory), in sparse form, up to a byte budget; a remembered tensor is held, so its memory cannot be
reused by another tensor, and its version counter tells an in-place change apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_BUDGET_BYTES = 2 * 1024**3
"""Memory the remembered codes may take (sparse, on the SAE's device)."""


def _identity(x: torch.Tensor) -> tuple[Any, ...]:
    return (x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x.device)


@dataclass
class _Remembered:
    source: torch.Tensor
    """The encoded tensor itself, held so that no other tensor can take its memory while remembered."""
    version: int
    code: torch.Tensor
    """The code, sparse (2-D, latents last) unless a dense copy is smaller."""
    code_shape: torch.Size
    decoded: torch.Tensor | None = None


def _compact(code: torch.Tensor) -> tuple[torch.Tensor, int]:
    flat = code.detach().reshape(-1, code.shape[-1])
    sparse = flat.to_sparse()
    sparse_bytes = sparse._nnz() * (code.element_size() + 16)
    dense_bytes = flat.numel() * code.element_size()
    if sparse_bytes < dense_bytes:
        return sparse, sparse_bytes
    return flat.clone(), dense_bytes


class _EncodeMemo:
    def __init__(self, encode: Any, decode: Any, budget_bytes: int) -> None:
        self._encode = encode
        self._decode = decode
        self._budget = budget_bytes
        self._used = 0
        self._seen: set[tuple[Any, ...]] = set()
        self._remembered: dict[tuple[Any, ...], _Remembered] = {}
        self._handed_out: tuple[torch.Tensor, int, _Remembered] | None = None
        """The last code handed out from memory, its version then, and where it came from."""
        self.hits = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        key = _identity(x)
        entry = self._remembered.get(key)
        if entry is not None and entry.version == x._version:
            self.hits += 1
            code = entry.code.to_dense() if entry.code.is_sparse else entry.code.clone()
            code = code.reshape(entry.code_shape)
            self._handed_out = (code, code._version, entry)
            return code
        code = self._encode(x)
        if entry is not None:  # the tensor changed in place since: forget it
            self._used -= _footprint(entry)
            del self._remembered[key]
        elif key in self._seen and self._used < self._budget:
            compact, size = _compact(code)
            if self._used + size <= self._budget:
                self._remembered[key] = _Remembered(x, x._version, compact, code.shape)
                self._used += size
        self._seen.add(key)
        self._handed_out = None
        return code

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        handed = self._handed_out
        if handed is not None and handed[0] is code and code._version == handed[1]:
            entry = handed[2]
            if entry.decoded is None:
                entry.decoded = self._decode(code).detach()
                self._used += entry.decoded.numel() * entry.decoded.element_size()
            else:
                self.hits += 1
            return entry.decoded.clone()
        return self._decode(code)


def _footprint(entry: _Remembered) -> int:
    code = entry.code
    size = code._nnz() * (code.element_size() + 16) if code.is_sparse else code.numel() * code.element_size()
    if entry.decoded is not None:
        size += entry.decoded.numel() * entry.decoded.element_size()
    return size


@contextlib.contextmanager
def memoized_encodes(sae: Any, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Iterator[_EncodeMemo]:
    """Within the block, `sae.encode` and `sae.decode` answer repeats from memory (see the module docstring)."""
    memo = _EncodeMemo(sae.encode, sae.decode, budget_bytes)
    # Instance attributes shadow the class's methods for every caller, SAE-Bench's included.
    sae.encode, sae.decode = memo.encode, memo.decode
    try:
        yield memo
    finally:
        del sae.encode, sae.decode
