"""Labelled text classes built offline from the sets shipped in `sae-probes`, in the shape SAE-Bench's probing
loader returns: `{class_name: [text, ...]}` for a train and a test split.

Each offline set stands in for one of SAE-Bench's hub datasets (`STANDS_IN_FOR`); the names carry an
`sae-probes/` prefix so they can never be mistaken for SAE-Bench's own. Several class sets raise IndexError in
`sae_probes.utils_data`'s reader, so the CSVs are read directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tsae_evals.errors import UsageError, unknown_name

PREFIX = "sae-probes/"


@dataclass(frozen=True)
class ClassSet:
    """How one offline class set is assembled from sae-probes files."""

    files: tuple[str, ...]
    """sae-probes file tags read."""
    positives_only: bool
    """True: each file is a binary set whose positive rows are one class (named by the file's last word);
    False: one file whose `target` column holds the class names."""
    stands_in_for: str
    """The SAE-Bench dataset it replaces offline ("" where it adds a task SAE-Bench does not have)."""


CLASS_SETS: dict[str, ClassSet] = {
    "ag_news": ClassSet(("161_agnews_0", "162_agnews_1", "163_agnews_2"), True, "fancyzhx/ag_news"),
    "code": ClassSet(("158_code_C", "159_code_Python", "160_code_HTML"), True, "codeparrot/github-code"),
    "news_class": ClassSet(("97_news_class",), False, ""),
    "amazon_rating": ClassSet(("112_amzn_rev",), False, "canrager/amazon_reviews_mcauley_1and5_sentiment"),
    "tweet_emotion": ClassSet(("102_twt_emotion",), False, ""),
    "athlete_sport": ClassSet(("108_athlete_sport",), False, "LabHC/bias_in_bios_class_set1-3 (people by occupation)"),
    "science_subject": ClassSet(("99_sci_cat",), False, ""),
}
DEFAULT_CLASS_SETS = tuple(PREFIX + name for name in CLASS_SETS)


def sae_probes_data_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("sae_probes")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("offline labelled data needs the package sae-probes", "run `bash scripts/setup.sh`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "cleaned_data"


def is_offline_name(name: str) -> bool:
    return name.startswith(PREFIX)


def check_names(names: list[str], where: str) -> None:
    """Refuse unknown offline names before any compute (hub names pass: they need the hub, checked when loaded)."""
    for name in names:
        if is_offline_name(name) and name.removeprefix(PREFIX) not in CLASS_SETS:
            raise unknown_name(
                "offline dataset",
                name,
                DEFAULT_CLASS_SETS,
                f"offline sets are {', '.join(DEFAULT_CLASS_SETS)}",
                where=where,
            )


@cache
def read_sae_probes(tag: str) -> tuple[tuple[str, str], ...]:
    """(text, target) rows of one sae-probes file, targets as strings."""
    import pandas as pd

    frame = pd.read_csv(sae_probes_data_dir() / f"{tag}.csv.zst", compression="zstd")
    frame = frame.dropna(subset=["prompt", "target"])
    return tuple(zip(frame["prompt"].astype(str), frame["target"].astype(str), strict=True))


def class_texts(name: str) -> dict[str, list[str]]:
    """Every text of an offline class set, by class (texts that appear in two classes are dropped)."""
    spec = CLASS_SETS[name.removeprefix(PREFIX)]
    found: dict[str, list[str]] = {}
    for tag in spec.files:
        for text, target in read_sae_probes(tag):
            if spec.positives_only:
                if target == "1":
                    found.setdefault(tag.rsplit("_", 1)[-1], []).append(text)
            else:
                found.setdefault(target, []).append(text)
    seen: dict[str, int] = {}
    for texts in found.values():
        for text in set(texts):
            seen[text] = seen.get(text, 0) + 1
    return {label: sorted({t for t in texts if seen[t] == 1}) for label, texts in sorted(found.items())}


def train_test_split(
    name: str, train_set_size: int, test_set_size: int, seed: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """SAE-Bench's sizes: each class gets `train_set_size // 2` train and `test_set_size // 2` test texts (its
    probes are one class against the rest, balanced), drawn without overlap with a seeded shuffle."""
    per_class_train, per_class_test = train_set_size // 2, test_set_size // 2
    train: dict[str, list[str]] = {}
    test: dict[str, list[str]] = {}
    for label, texts in class_texts(name).items():
        if len(texts) < per_class_train + per_class_test:
            raise UsageError(
                f"offline set {name} has {len(texts)} texts of class {label!r}, fewer than the "
                f"{per_class_train + per_class_test} asked for",
                "lower probe_train_set_size / probe_test_set_size",
            )
        picked = random.Random(f"{seed}-{name}-{label}").sample(texts, per_class_train + per_class_test)
        train[label], test[label] = picked[:per_class_train], picked[per_class_train:]
    return train, test
