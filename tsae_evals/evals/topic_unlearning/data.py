"""Forget and retain text for the topic-unlearning stand-in: one class of an offline sae-probes topic set against
the others, split by document into latent-selection and held-out evaluation windows.

Only sets whose class labels were checked against their text are offered. `code` and `ag_news` pass a keyword
check (Python files use `def`/`import`; ag_news 1 is sports, 2 business, 0 world). Two long-text sets were left out
because their labels do not match their text: in sae-probes 0.4.2's `101_disease_class` the texts labelled
"cardiovascular diseases" are mostly about tumours and those labelled "general pathological conditions" mostly
about the heart, and in `97_news_class` the "Technology" texts read as business news.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tsae_evals.data.labelled import class_texts
from tsae_evals.errors import UsageError, unknown_name

if TYPE_CHECKING:
    import torch

    from tsae_evals.evals.topic_unlearning.config import TopicUnlearningConfig

TOPIC_SETS = ("code", "ag_news")
"""Offline sae-probes class sets (names of `tsae_evals.data.labelled.CLASS_SETS`) usable as topics."""
CHARS_PER_TOKEN_CAP = 16
"""Characters of a document tokenised per window token: more than any tokenizer here spends on text."""


@dataclass(frozen=True)
class TopicTexts:
    """The documents of each side, in a seeded order (retain classes interleaved, so every prefix is balanced)."""

    forget: list[str]
    """Documents of the forget class."""
    retain: list[str]
    """Documents of the retain classes."""
    retain_classes: list[str]
    """The retain classes used."""


@dataclass(frozen=True)
class TopicWindows:
    """Token windows `[n, context_size]`, one per document; selection and evaluation never share a document."""

    selection_forget: torch.Tensor
    """Forget windows the latents are chosen on."""
    selection_retain: torch.Tensor
    """Retain windows the latents are chosen on."""
    eval_forget: torch.Tensor
    """Held-out forget windows the interventions are measured on."""
    eval_retain: torch.Tensor
    """Held-out retain windows the interventions are measured on."""


def topic_texts(cfg: TopicUnlearningConfig, seed: int) -> TopicTexts:
    """Check the set and classes against the data and return the shuffled documents of each side.

    Refuses (UsageError) an unknown set or class, a forget class among the retain classes, and a side with fewer
    documents than the windows asked for (each window takes its own document)."""
    where = " (topic_unlearning_standin)"
    if cfg.dataset not in TOPIC_SETS:
        raise unknown_name(
            "topic set", cfg.dataset, TOPIC_SETS, f"set topic_unlearning_standin.dataset to {' or '.join(TOPIC_SETS)}"
        )
    by_class = class_texts(cfg.dataset)
    classes = list(by_class)
    for name in [cfg.forget_class, *cfg.retain_classes]:
        if name not in by_class:
            raise unknown_name(
                f"class of {cfg.dataset}",
                name,
                classes,
                f"set forget_class / retain_classes to classes of {cfg.dataset}: {', '.join(classes)}",
                where=where,
            )
    if cfg.forget_class in cfg.retain_classes:
        raise UsageError(
            f"class {cfg.forget_class!r} is both forgotten and retained",
            "leave the forget class out of topic_unlearning_standin.retain_classes",
        )
    retain_classes = list(cfg.retain_classes) or [name for name in classes if name != cfg.forget_class]
    if not retain_classes:
        raise UsageError(f"topic set {cfg.dataset} has no class to retain", "use a set with at least two classes")
    rng = random.Random(f"{seed}-topic-unlearning-{cfg.dataset}")
    forget = list(by_class[cfg.forget_class])
    rng.shuffle(forget)
    shuffled = []
    for name in retain_classes:
        texts = list(by_class[name])
        rng.shuffle(texts)
        shuffled.append(texts)
    retain = [text for group in zip(*shuffled, strict=False) for text in group]  # round robin, balanced
    needed = cfg.n_selection_windows + cfg.n_eval_windows
    for side, texts in (("forget", forget), ("retain", retain)):
        if len(texts) < needed:
            raise UsageError(
                f"the {side} side of {cfg.dataset} has {len(texts)} documents, fewer than the {needed} windows asked "
                "for (one document per window)",
                "lower topic_unlearning_standin.n_selection_windows / n_eval_windows",
            )
    return TopicTexts(forget, retain, retain_classes)


def cut_windows(
    tokenizer: Any,
    texts: list[str],
    *,
    n_selection: int,
    n_eval: int,
    context_size: int,
    prepend_bos: bool,
    seed: int,
    label: str,
) -> tuple[list[list[int]], list[list[int]]]:
    """One window per document, at a seeded offset inside it (so that not every window is a file header): the
    first `n_selection` long-enough documents give the selection windows, the next `n_eval` the evaluation ones.
    Shorter documents are skipped, never padded. `label` names the side in the error when documents run out."""
    body = context_size - 1 if prepend_bos else context_size
    rng = random.Random(f"{seed}-topic-unlearning-offsets-{label}")
    prefix = [tokenizer.bos_token_id] if prepend_bos else []
    rows: list[list[int]] = []
    for text in texts:
        # Tokenising a whole long file to take one window from it is wasted work: a generous prefix suffices.
        ids = tokenizer(text[: body * CHARS_PER_TOKEN_CAP], add_special_tokens=False)["input_ids"]
        if len(ids) < body:
            continue
        start = rng.randint(0, len(ids) - body)
        rows.append(prefix + list(ids[start : start + body]))
        if len(rows) == n_selection + n_eval:
            return rows[:n_selection], rows[n_selection:]
    raise UsageError(
        f"only {len(rows)} {label} documents are at least {body} tokens long, {n_selection + n_eval} needed",
        "lower topic_unlearning_standin.n_selection_windows / n_eval_windows or --context-size",
    )


def topic_windows(
    tokenizer: Any, cfg: TopicUnlearningConfig, *, context_size: int, prepend_bos: bool, seed: int
) -> tuple[TopicWindows, list[str]]:
    """The four window sets of a run, and the retain classes used."""
    import torch

    if prepend_bos and tokenizer.bos_token_id is None:
        raise UsageError("the tokenizer has no BOS token but prepend_bos is on", "set prepend_bos to false")
    texts = topic_texts(cfg, seed)
    sides = {}
    for label, documents in (("forget", texts.forget), ("retain", texts.retain)):
        selection, held_out = cut_windows(
            tokenizer,
            documents,
            n_selection=cfg.n_selection_windows,
            n_eval=cfg.n_eval_windows,
            context_size=context_size,
            prepend_bos=prepend_bos,
            seed=seed,
            label=label,
        )
        sides[label] = (torch.tensor(selection, dtype=torch.long), torch.tensor(held_out, dtype=torch.long))
    windows = TopicWindows(sides["forget"][0], sides["retain"][0], sides["forget"][1], sides["retain"][1])
    return windows, texts.retain_classes
