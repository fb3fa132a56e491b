"""Probe items: one sentence prefix each, with its label, its split and the named positions a probe reads.

The three linguistic probes (agreement, coreference, disambiguation) generate these in code from our own
templates and word lists, or read a user's JSONL file of the same fields (`read_items`). Positions are character
offsets into `prefix`, so items stay tokenizer-free: each model maps them to the token that contains them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tsae_evals.errors import UsageError


class ProbeItem(BaseModel):
    """One probe item (one line of an items JSONL file)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    prefix: str = Field(min_length=1)
    """The text the model reads (no BOS; the run adds it); the behavioural gate compares next-token logits after
    its last token."""
    label: int = Field(ge=0, le=1)
    """The probe's target class (e.g. 1 = plural subject)."""
    template: str = Field(min_length=1)
    """Template id: the behavioural gate and the accuracies are reported per template."""
    split: Literal["train", "test"]
    """Probe fitting or evaluation; generators keep the word lemmas of the two disjoint."""
    marks: dict[str, int] = Field(default_factory=dict)
    """Named readout positions as character offsets into `prefix`: a probe at mark NAME reads the token that
    contains `prefix[offset]` (generators mark a word's last character). The last token is always readable as
    `last`, without a mark."""
    correct: str = ""
    """The continuation the model should prefer after `prefix` (e.g. " are"); empty when the item has no gate."""
    wrong: str = ""
    """The continuation it should not prefer (e.g. " is"); set exactly when `correct` is."""
    group: str = ""
    """Minimal-pair id: items sharing it must tokenise to the same length (otherwise all of them are dropped)."""
    meta: dict[str, str] = Field(default_factory=dict)
    """Anything else a generator records (lemmas, sense, condition such as congruent/incongruent)."""

    @model_validator(mode="after")
    def _consistent(self) -> ProbeItem:
        if bool(self.correct) != bool(self.wrong):
            raise ValueError("set both `correct` and `wrong`, or neither")
        if self.correct and self.correct == self.wrong:
            raise ValueError("`correct` and `wrong` are the same continuation")
        outside = {name: offset for name, offset in self.marks.items() if not 0 <= offset < len(self.prefix)}
        if outside:
            raise ValueError(f"marks {outside} fall outside the prefix ({len(self.prefix)} characters)")
        return self


def items_hash(items: list[ProbeItem]) -> str:
    """A content hash of an item set: results record it, so a changed generator or file is never confused."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.model_dump_json().encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def write_items(path: Path, items: list[ProbeItem]) -> Path:
    """Items as JSONL (one item per line), the format `read_items` reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(item.model_dump_json() + "\n" for item in items), encoding="utf-8")
    return path


def read_items(path: Path) -> list[ProbeItem]:
    """A user's items file, validated line by line; a bad file is a one-line UsageError naming the line."""
    if not path.is_file():
        raise UsageError(f"items file {path} does not exist", "pass a JSONL file with one probe item per line")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(ProbeItem(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise UsageError(f"{path}:{number} is not a JSON object: {exc}", "write one JSON object per line") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "item"
            raise UsageError(
                f"{path}:{number}: {where}: {first['msg']}",
                "fields: prefix, label (0/1), template, split (train/test), marks, correct, wrong, group, meta",
            ) from None
    splits = {item.split for item in items}
    labels = {(item.split, item.label) for item in items}
    if splits != {"train", "test"} or len(labels) != 4:
        raise UsageError(
            f"items file {path} needs both labels in both splits (has {sorted(labels)})",
            "give each of train and test items of label 0 and of label 1",
        )
    return items
