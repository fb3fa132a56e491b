"""Token windows: fixed-length, one document each, BOS explicit, seeded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tsae_evals.errors import UsageError

if TYPE_CHECKING:
    import torch

    from tsae_evals.data.documents import Documents


@dataclass(frozen=True)
class TokenWindows:
    """Windows of `context_size` tokens; each comes from one document and never crosses into another."""

    tokens: torch.Tensor
    """[n_windows, context_size] token ids."""
    prepend_bos: bool
    """Whether position 0 of every window is the BOS token (and so carries no document text)."""
    source: str
    """The dataset the windows were cut from."""
    seed: int
    """Seed of the document order."""

    @property
    def first_text_position(self) -> int:
        return 1 if self.prepend_bos else 0

    @property
    def n_windows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def context_size(self) -> int:
        return int(self.tokens.shape[1])


def make_windows(
    tokenizer: Any,
    documents: Documents,
    *,
    context_size: int,
    n_windows: int,
    prepend_bos: bool = True,
    max_windows_per_document: int = 2,
) -> TokenWindows:
    """Cut `n_windows` windows from the documents in order, at most `max_windows_per_document` from each.

    A document shorter than one window contributes nothing: padding would put fake tokens into every metric.
    """
    import torch

    rows: list[list[int]] = []
    for row in iter_windows(
        tokenizer,
        documents,
        context_size=context_size,
        prepend_bos=prepend_bos,
        max_windows_per_document=max_windows_per_document,
    ):
        rows.append(row)
        if len(rows) == n_windows:
            return TokenWindows(torch.tensor(rows, dtype=torch.long), prepend_bos, documents.source, documents.seed)
    raise too_few_windows(documents.source, len(rows), n_windows, context_size, max_windows_per_document)


def iter_windows(
    tokenizer: Any,
    documents: Documents,
    *,
    context_size: int,
    prepend_bos: bool = True,
    max_windows_per_document: int = 2,
) -> Iterator[list[int]]:
    """Token ids of each window in document order (see make_windows), one at a time: memory flat in windows."""
    if prepend_bos and tokenizer.bos_token_id is None:
        raise UsageError("the tokenizer has no BOS token but prepend_bos is on", "set prepend_bos to false")
    body = context_size - 1 if prepend_bos else context_size
    if body < 2:
        raise UsageError(f"context size {context_size} is too small", "use a context size of at least 3")
    if max_windows_per_document < 1:
        raise UsageError(
            f"max_windows_per_document is {max_windows_per_document}", "allow at least one window per document"
        )
    for text in documents.texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, min(len(ids) - body + 1, body * max_windows_per_document), body):
            yield ([tokenizer.bos_token_id] if prepend_bos else []) + ids[start : start + body]


def too_few_windows(source: str, found: int, needed: int, context_size: int, per_document: int) -> UsageError:
    """The error for a dataset that runs out of windows, naming the settings that would give more."""
    return UsageError(
        f"dataset {source!r} gives only {found} windows of {context_size} tokens at most {per_document} per "
        f"document, {needed} needed",
        "use a larger dataset, fewer windows or tokens, a shorter context (--context-size), or allow more windows "
        "per document (--max-windows-per-document when training)",
    )
