"""SAE-Bench core's SAE-independent model forwards, run once for all the SAEs of a run.

Per batch and SAE, SAE-Bench's `run_evals` runs the model three times in full (clean, with the SAE spliced in, with
the hook zero-ablated) and once more up to the hook for the sparsity and variance metrics. Only the spliced run
depends on the SAE: the other three give the same bits for every SAE of a run, which reads the same windows. The
model handed to `run_evals` is a `SharedForwards` view of ours: it answers those three calls from memory when the
same model is asked them again on the same tokens, and passes everything else through. What it hands out are
copies, so SAE-Bench may change them in place; the numbers are bit-identical with and without it (a test checks
it), and SAE-Bench's code runs unchanged.

The memory lives as long as the run's windows (one `TokenWindows` object per run) and holds at most `budget_bytes`
of outputs; a forward that would exceed it is not kept (on a large vocabulary a batch's logits alone can), and runs
again for the next SAE as it would without this.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import torch

DEFAULT_BUDGET_BYTES = 2 * 1024**3
"""Memory the remembered outputs may take, on the model's device."""

ZERO_ABLATION_HOOK = "get_recons_loss.<locals>.standard_zero_ablate_hook"
"""SAE-Bench core's hook that zeroes the hook point's activations: it reads nothing of the SAE but its device."""

_memos: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


def _tokens_key(tokens: Any) -> tuple[Any, ...] | None:
    if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point():
        return None
    data = tokens.detach().cpu().contiguous()
    return tuple(data.shape), str(data.dtype), hashlib.blake2b(data.numpy().tobytes(), digest_size=16).digest()


def _plain(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str | bool | int | float)
        or (isinstance(value, list | tuple) and all(_plain(item) for item in value))
    )


def _copy(value: Any) -> Any:
    from transformer_lens import ActivationCache

    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, ActivationCache):
        return ActivationCache(
            {name: tensor.clone() for name, tensor in value.cache_dict.items()},
            value.model,
            has_batch_dim=value.has_batch_dim,
        )
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # TransformerLens's (logits, loss) Output
        return type(value)(*(_copy(item) for item in value))
    if isinstance(value, tuple | list):
        return type(value)(_copy(item) for item in value)
    return value


def _nbytes(value: Any) -> int:
    from transformer_lens import ActivationCache

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, ActivationCache):
        return sum(_nbytes(tensor) for tensor in value.cache_dict.values())
    if isinstance(value, tuple | list):
        return sum(_nbytes(item) for item in value)
    return 0


class SharedForwards:
    """`model` as SAE-Bench core sees it, answering its clean, zero-ablated and up-to-the-hook forwards of tokens
    it has run before from memory (kept while `scope`, the run's windows, lives)."""

    def __init__(self, model: Any, scope: Any, budget_bytes: int | None = None) -> None:
        self._model = model
        self._memo = _memos.setdefault(scope, {})
        self._budget_bytes = DEFAULT_BUDGET_BYTES if budget_bytes is None else budget_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
        return self._remembered("forward", (), tokens, args, kwargs, lambda: self._model(tokens, *args, **kwargs))

    def run_with_hooks(self, tokens: Any, *args: Any, fwd_hooks: Any = (), **kwargs: Any) -> Any:
        hooks = list(fwd_hooks)
        zero_ablated = len(hooks) == 1 and getattr(hooks[0][1], "__qualname__", "") == ZERO_ABLATION_HOOK
        if not zero_ablated or kwargs.get("bwd_hooks"):
            return self._model.run_with_hooks(tokens, *args, fwd_hooks=fwd_hooks, **kwargs)
        return self._remembered(
            "zero_ablated",
            (hooks[0][0],),
            tokens,
            args,
            kwargs,
            lambda: self._model.run_with_hooks(tokens, *args, fwd_hooks=fwd_hooks, **kwargs),
        )

    def run_with_cache(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
        return self._remembered(
            "cache", (), tokens, args, kwargs, lambda: self._model.run_with_cache(tokens, *args, **kwargs)
        )

    def _remembered(
        self, kind: str, extra: tuple[Any, ...], tokens: Any, args: tuple[Any, ...], kwargs: dict[str, Any], run: Any
    ) -> Any:
        tokens_key = _tokens_key(tokens)
        if tokens_key is None or torch.is_grad_enabled() or not _plain(args) or not _plain(list(kwargs.values())):
            return run()
        if any(point.fwd_hooks or point.bwd_hooks for point in self._model.hook_dict.values()):
            return run()  # hooks someone left on the model would make the output theirs, not the model's
        weights = tuple((param.data_ptr(), param._version) for param in self._model.parameters())
        key = (kind, extra, tokens_key, repr(args), repr(sorted(kwargs.items())), id(self._model), weights)
        if key in self._memo:
            return _copy(self._memo[key])
        output = run()
        size = _nbytes(output)
        if size + sum(_nbytes(kept) for kept in self._memo.values()) <= self._budget_bytes:
            self._memo[key] = output
            return _copy(output)
        return output
