"""Probe items as one model's tokens: right-padded token rows, each mark's token position, the gate's token ids,
and the items that fail the tokenization checks dropped (and counted by reason).

Checks, per model (a word that is one token for one tokenizer can be two for another):
- the `correct` and `wrong` continuations must each add exactly one token after the prefix;
- every mark must fall inside a token (a mark on a character no token covers has nowhere to be read);
- the prefix (BOS included) must fit the model's context;
- the items of a minimal-pair `group` must tokenise to the same length, or the whole group is dropped (their
  positions would no longer line up).
Only items failing a check are dropped: an item whose group partner fails another check stays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tsae_evals.errors import UsageError
from tsae_evals.probing.items import ProbeItem, items_hash

if TYPE_CHECKING:
    import torch

LAST = "last"
"""The position name every item has: its last prefix token (the gate reads the next-token logits there)."""
DROP_REASONS = ("continuation_not_one_token", "mark_without_token", "too_long", "group_length_mismatch")
"""Why an item is dropped, in the order the checks run (an item is counted under its first failing check)."""


@dataclass(frozen=True)
class EncodedItems:
    """The items that passed every check, tokenised for one model (row i is `items[i]`)."""

    items: list[ProbeItem]
    """The kept items, in their original order."""
    tokens: torch.Tensor
    """`[n, max_len]` token ids, BOS first when `prepend_bos`, right-padded (read only positions < length)."""
    lengths: torch.Tensor
    """`[n]` tokens per row before padding (BOS included)."""
    positions: dict[str, torch.Tensor]
    """Mark name -> `[n]` token position of the token containing the mark's character (-1 for items without
    that mark); `last` -> `lengths - 1`."""
    correct_ids: torch.Tensor
    """`[n]` the correct continuation's token id (-1 for items without a gate)."""
    wrong_ids: torch.Tensor
    """`[n]` the wrong continuation's token id (-1 for items without a gate)."""
    dropped: dict[str, int]
    """Items dropped per reason (every reason of DROP_REASONS present, zeros included)."""
    prepend_bos: bool
    """Whether each row starts with BOS."""
    source_hash: str
    """`items_hash` of the items before any was dropped (what the result records)."""

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def labels(self) -> torch.Tensor:
        """`[n]` the items' labels (int64)."""
        import torch

        return torch.tensor([item.label for item in self.items], dtype=torch.long)

    @property
    def is_train(self) -> torch.Tensor:
        """`[n]` True for train items, False for test items."""
        import torch

        return torch.tensor([item.split == "train" for item in self.items], dtype=torch.bool)

    @property
    def has_gate(self) -> torch.Tensor:
        """`[n]` True for items with a correct/wrong continuation."""
        return self.correct_ids >= 0

    @property
    def templates(self) -> list[str]:
        return [item.template for item in self.items]

    def where(self, template: str | None = None, **meta: str) -> torch.Tensor:
        """`[n]` mask of the items of `template` (any when None) whose `meta` has every given key=value."""
        import torch

        return torch.tensor(
            [
                (template is None or item.template == template)
                and all(item.meta.get(key) == value for key, value in meta.items())
                for item in self.items
            ],
            dtype=torch.bool,
        )

    @property
    def token_key(self) -> str:
        """Hash of the token rows and lengths: what a model's forward over these items depends on."""
        digest = hashlib.sha256(self.tokens.cpu().numpy().tobytes())
        digest.update(self.lengths.cpu().numpy().tobytes())
        return digest.hexdigest()[:16]


def _single_continuation(prefix_ids: list[int], full_ids: list[int]) -> int | None:
    """The one token `full_ids` adds after `prefix_ids`, or None when it adds more, or retokenises the prefix."""
    if len(full_ids) != len(prefix_ids) + 1 or full_ids[: len(prefix_ids)] != prefix_ids:
        return None
    return full_ids[-1]


def _token_of(offsets: list[tuple[int, int]], char: int) -> int | None:
    for index, (start, end) in enumerate(offsets):
        if start <= char < end:
            return index
    return None


def encode_items(
    tokenizer: Any, items: list[ProbeItem], prepend_bos: bool, max_length: int | None = None
) -> EncodedItems:
    """Tokenise `items` for one model (a fast Hugging Face tokenizer: marks are found by its offset mapping);
    `max_length` is the model's context (None: no limit). Items failing a check are dropped and counted."""
    if not getattr(tokenizer, "is_fast", False):
        raise UsageError(
            "probe items need a fast tokenizer (its offset mapping locates the marks)",
            "load the model with a tokenizers-backed (fast) Hugging Face tokenizer",
        )
    if prepend_bos and tokenizer.bos_token_id is None:
        raise UsageError("the tokenizer has no BOS token but prepend_bos is on", "set prepend_bos to false")
    dropped = dict.fromkeys(DROP_REASONS, 0)
    if not items:
        return _encoded([], [], [], [], [], dropped, prepend_bos, items_hash(items), tokenizer)
    bos = [tokenizer.bos_token_id] if prepend_bos else []
    prefixes = tokenizer([item.prefix for item in items], add_special_tokens=False, return_offsets_mapping=True)
    gated = [index for index, item in enumerate(items) if item.correct]
    texts = [items[i].prefix + items[i].correct for i in gated] + [items[i].prefix + items[i].wrong for i in gated]
    full = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    continuation: dict[int, tuple[int | None, int | None]] = {}
    for slot, index in enumerate(gated):
        ids = list(prefixes["input_ids"][index])
        continuation[index] = (
            _single_continuation(ids, list(full[slot])),
            _single_continuation(ids, list(full[len(gated) + slot])),
        )

    kept: list[tuple[int, list[int], dict[str, int], int, int]] = []  # (item index, ids, marks, correct, wrong)
    for index, item in enumerate(items):
        correct_id, wrong_id = continuation.get(index, (-1, -1))
        if correct_id is None or wrong_id is None:
            dropped["continuation_not_one_token"] += 1
            continue
        ids = bos + list(prefixes["input_ids"][index])
        offsets = [(int(start), int(end)) for start, end in prefixes["offset_mapping"][index]]
        marks = {name: _token_of(offsets, char) for name, char in item.marks.items()}
        if any(position is None for position in marks.values()):
            dropped["mark_without_token"] += 1
            continue
        if max_length is not None and len(ids) > max_length:
            dropped["too_long"] += 1
            continue
        shifted = {name: position + len(bos) for name, position in marks.items() if position is not None}
        kept.append((index, ids, shifted, correct_id, wrong_id))

    lengths_by_group: dict[str, set[int]] = {}
    for index, ids, *_ in kept:
        if items[index].group:
            lengths_by_group.setdefault(items[index].group, set()).add(len(ids))
    mismatched = {group for group, lengths in lengths_by_group.items() if len(lengths) > 1}
    final = [entry for entry in kept if items[entry[0]].group not in mismatched]
    dropped["group_length_mismatch"] = len(kept) - len(final)
    return _encoded(
        [items[entry[0]] for entry in final],
        [entry[1] for entry in final],
        [entry[2] for entry in final],
        [entry[3] for entry in final],
        [entry[4] for entry in final],
        dropped,
        prepend_bos,
        items_hash(items),
        tokenizer,
    )


def _encoded(
    items: list[ProbeItem],
    rows: list[list[int]],
    marks: list[dict[str, int]],
    correct: list[int],
    wrong: list[int],
    dropped: dict[str, int],
    prepend_bos: bool,
    source_hash: str,
    tokenizer: Any,
) -> EncodedItems:
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max((len(row) for row in rows), default=1)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for index, row in enumerate(rows):
        tokens[index, : len(row)] = torch.tensor(row, dtype=torch.long)
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    names = sorted({name for item_marks in marks for name in item_marks})
    positions = {name: torch.tensor([m.get(name, -1) for m in marks], dtype=torch.long) for name in names}
    positions[LAST] = lengths - 1
    return EncodedItems(
        items=items,
        tokens=tokens,
        lengths=lengths,
        positions=positions,
        correct_ids=torch.tensor(correct, dtype=torch.long),
        wrong_ids=torch.tensor(wrong, dtype=torch.long),
        dropped=dropped,
        prepend_bos=prepend_bos,
        source_hash=source_hash,
    )
