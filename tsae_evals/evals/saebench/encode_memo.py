"""Repeated SAE encodes answered from memory, for SAE-Bench code that encodes the same activations many times.

SAE-Bench's SCR and TPP (`ablated_precomputed_activations`) encode every test batch, decode it, zero some latents
and decode again, once per (ablated class, threshold): the same batch is encoded 14-35 times per SAE and seed, and
those encodes and unablated decodes are two thirds of the eval's own compute. Inside `memoized_encodes` the SAE
answers a repeated encode of the same tensor from memory and the decode of a code it has just handed out (still
unmodified) from memory too; everything else runs for real. The outputs are the very tensors the SAE computed,
so SAE-Bench's numbers are bit-identical (a test checks it) and its code runs unchanged.

A batch is remembered from its first encode, in sparse form, up to a byte budget, for as long as the tensor it
is a view of lives: a weak reference drops the entry when that tensor is freed (so one-off encodes, such as
SAE-Bench's training-set attributions, hold their memory only as long as SAE-Bench does, and no later tensor that
reuses the address can be mistaken for it), and the version counter tells an in-place change apart.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_BUDGET_BYTES = 2 * 1024**3
"""Memory the remembered codes may take (sparse, on the SAE's device)."""


def _identity(x: torch.Tensor) -> tuple[Any, ...]:
    return (x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x.device)


@dataclass
class _Remembered:
    owner: weakref.ref[torch.Tensor]
    """The tensor the encoded one is a view of (or itself); the entry goes when it is freed."""
    version: int
    code: torch.Tensor
    """The code, sparse (2-D, latents last) unless a dense copy is smaller."""
    code_shape: torch.Size
    decoded: torch.Tensor | None = None


def _nbytes(tensor: torch.Tensor) -> int:
    """Memory a remembered tensor takes: a sparse one's values and its two int64 indices per value."""
    if tensor.is_sparse:
        return tensor._nnz() * (tensor.element_size() + 16)
    return tensor.numel() * tensor.element_size()


def _compact(code: torch.Tensor) -> torch.Tensor:
    """The code as a 2-D (latents last) sparse tensor, or a dense copy where that is smaller."""
    flat = code.detach().reshape(-1, code.shape[-1])
    sparse = flat.to_sparse()
    return sparse if _nbytes(sparse) < _nbytes(flat) else flat.clone()


class _EncodeMemo:
    def __init__(self, encode: Any, decode: Any, budget_bytes: int) -> None:
        self._encode = encode
        self._decode = decode
        self._budget = budget_bytes
        self._used = 0
        self._remembered: dict[tuple[Any, ...], _Remembered] = {}
        self._handed_out: tuple[torch.Tensor, int, _Remembered] | None = None
        """The last code handed out, its version then, and the entry that remembers it."""
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
        if entry is not None:  # the tensor changed in place since: forget it
            self._forget(key)
        code = self._encode(x)
        self._handed_out = None
        if self._used < self._budget:
            compact = _compact(code)
            size = _nbytes(compact)
            if self._used + size <= self._budget:
                owner = x if x._base is None else x._base
                entry = _Remembered(weakref.ref(owner, self._forgetter(key)), x._version, compact, code.shape)
                self._remembered[key] = entry
                self._used += size
                self._handed_out = (code, code._version, entry)
        return code

    @property
    def n_remembered(self) -> int:
        return len(self._remembered)

    def _forgetter(self, key: tuple[Any, ...]) -> Callable[[Any], None]:
        return lambda _: self._forget(key)

    def _forget(self, key: tuple[Any, ...]) -> None:
        entry = self._remembered.pop(key, None)
        if entry is not None:
            self._used -= _footprint(entry)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        handed = self._handed_out
        if handed is not None and handed[0] is code and code._version == handed[1]:
            entry = handed[2]
            if entry.decoded is None:
                entry.decoded = self._decode(code).detach()
                self._used += _nbytes(entry.decoded)
            else:
                self.hits += 1
            return entry.decoded.clone()
        return self._decode(code)


def _footprint(entry: _Remembered) -> int:
    return _nbytes(entry.code) + (0 if entry.decoded is None else _nbytes(entry.decoded))


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
