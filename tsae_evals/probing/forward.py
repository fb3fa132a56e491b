"""One model forward per item set, shared by every SAE of a run and every probe eval: the hook activations the
probes read and the behavioural gate (correct-minus-wrong next-token logit difference at the last position).

The result is cached for the process, keyed by the model (its identity and fingerprint), the token rows and the
hooks, so a second SAE on the same hook, or a second eval on the same items, reads it instead of rerunning the
model; a request for a hook not yet cached runs one forward for the missing hooks only. Rows are right-padded:
the model is causal, so every position < length is exactly what the unpadded row gives (no mask needed).
`edited_logit_diff` reruns the model with the hook's activations replaced (the causal checks).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tsae_evals.probing.encode import EncodedItems

DEFAULT_BATCH_SIZE = 64
"""Items per model forward (items are a sentence long: far more of them fit a batch than windows do)."""
MAX_CACHED = 8
"""Item forwards kept per process (least recently used dropped first)."""

Edit = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""`edit(rows, activations) -> activations`: `rows [b]` the item indices of the batch, `activations [b, L, d]` the
hook's activations; returns what the model continues from."""


@dataclass(frozen=True)
class ItemForward:
    """What one forward over an item set gives every probe: activations per hook and the gate."""

    activations: dict[str, torch.Tensor]
    """Hook -> `[n, max_len, d]` activations (float32, on the CPU; positions >= length are padding)."""
    logit_diff: torch.Tensor
    """`[n]` logit(correct) - logit(wrong) after the last prefix token (NaN for items without a gate)."""

    @property
    def gate_correct(self) -> torch.Tensor:
        """`[n]` True where the model prefers the correct continuation (False for items without a gate)."""
        return self.logit_diff > 0


_cache: OrderedDict[tuple[Any, ...], ItemForward] = OrderedDict()
_forwards_run = 0


def forwards_run() -> int:
    """Model forwards `item_forward` has run in this process (tests count them)."""
    return _forwards_run


def clear_cache() -> None:
    """Forget every cached item forward."""
    _cache.clear()


def _model_key(model: Any) -> tuple[int, str]:
    from tsae_evals.models import model_fingerprint

    return id(model), model_fingerprint(model)


def item_forward(
    model: Any, encoded: EncodedItems, hooks: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> ItemForward:
    """Activations at `hooks` and the gate for every item, from the run's cache when another SAE or eval already
    asked for them (one forward for the hooks not cached yet otherwise). Runs on the model's device."""
    import torch

    if encoded.n == 0:
        raise ValueError("no items to run the model on (every item was dropped): check `encoded.n` first")
    key = (*_model_key(model), encoded.token_key)
    cached = _cache.get(key)
    missing = [hook for hook in dict.fromkeys(hooks) if cached is None or hook not in cached.activations]
    if cached is not None and not missing:
        _cache.move_to_end(key)
        return cached
    activations, logit_diff = _run(model, encoded, missing, batch_size)
    if cached is not None:
        activations = {**cached.activations, **activations}
    gate = logit_diff if cached is None else cached.logit_diff
    merged = ItemForward(activations, gate)
    _cache[key] = merged
    _cache.move_to_end(key)
    while len(_cache) > MAX_CACHED:
        _cache.popitem(last=False)
    assert torch.equal(merged.logit_diff.isnan(), ~encoded.has_gate)
    return merged


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _run(
    model: Any, encoded: EncodedItems, hooks: list[str], batch_size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    import torch

    from tsae_evals.errors import UsageError

    global _forwards_run
    _forwards_run += 1
    device = _device(model)
    parts: dict[str, list[torch.Tensor]] = {hook: [] for hook in hooks}
    diffs = []
    with torch.no_grad():
        for start in range(0, encoded.n, batch_size):
            rows = torch.arange(start, min(start + batch_size, encoded.n))
            tokens = encoded.tokens[rows].to(device)
            residual, cache = model.run_with_cache(
                tokens,
                names_filter=list(hooks),
                stop_at_layer=model.cfg.n_layers,  # the final residual: only the last position is unembedded
                prepend_bos=False,
                padding_side="right",
            )
            for hook in hooks:
                if hook not in cache:
                    raise UsageError(
                        f"hook {hook} is not reached by the blocks of {model.cfg.model_name}",
                        "probe a hook inside the model's blocks (e.g. blocks.6.hook_resid_post)",
                    )
                parts[hook].append(cache[hook].reshape(*cache[hook].shape[:2], -1).float().cpu())
            diffs.append(_last_logit_diff(model, residual, encoded, rows))
    activations = {hook: torch.cat(chunks) if chunks else torch.empty(0) for hook, chunks in parts.items()}
    logit_diff = torch.cat(diffs) if diffs else torch.empty(0)
    return activations, logit_diff


def _last_logit_diff(model: Any, residual: torch.Tensor, encoded: EncodedItems, rows: torch.Tensor) -> torch.Tensor:
    """logit(correct) - logit(wrong) at each row's last position from the final residual `[b, L, d_model]`
    (NaN where the item has no gate); unembeds only those two tokens."""
    import torch

    last = encoded.lengths[rows].to(residual.device) - 1
    final = residual[torch.arange(len(rows), device=residual.device), last][:, None]  # [b, 1, d_model]
    if model.cfg.normalization_type is not None:
        final = model.ln_final(final)
    final = final[:, 0]
    correct, wrong = encoded.correct_ids[rows], encoded.wrong_ids[rows]
    gated = correct >= 0
    ids = torch.stack([correct.clamp_min(0), wrong.clamp_min(0)], 1).to(residual.device)  # [b, 2]
    logits = (final[:, None, :] * model.W_U.T[ids]).sum(-1) + model.b_U[ids]
    cap = getattr(model.cfg, "output_logits_soft_cap", 0.0) or 0.0
    if cap > 0:
        logits = cap * torch.tanh(logits / cap)
    diff = (logits[:, 0] - logits[:, 1]).float().cpu()
    return torch.where(gated, diff, torch.full_like(diff, float("nan")))


def edited_logit_diff(
    model: Any,
    encoded: EncodedItems,
    hook: str,
    edit: Edit | None,
    rows: torch.Tensor | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """`[len(rows)]` the gate's logit difference with the hook's activations replaced by `edit(rows, activations)`
    (None: untouched) for the items `rows` (None: all). Never cached: every edit is its own forward."""
    import torch

    device = _device(model)
    rows = torch.arange(encoded.n) if rows is None else rows.cpu()
    diffs = []
    with torch.no_grad():
        for chunk in rows.split(batch_size):
            hooks: list[tuple[str, Any]] = []
            if edit is not None:

                def replace(activation: torch.Tensor, hook: Any, chunk: torch.Tensor = chunk) -> torch.Tensor:
                    flat = activation.reshape(*activation.shape[:2], -1)
                    return edit(chunk, flat).reshape(activation.shape).to(activation.dtype)

                hooks = [(hook, replace)]
            residual = model.run_with_hooks(
                encoded.tokens[chunk].to(device),
                fwd_hooks=hooks,
                stop_at_layer=model.cfg.n_layers,
                prepend_bos=False,
                padding_side="right",
            )
            diffs.append(_last_logit_diff(model, residual, encoded, chunk))
    return torch.cat(diffs) if diffs else torch.empty(0)
