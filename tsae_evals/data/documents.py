"""Where text comes from: `--dataset` names one of these sources.

- `sae-probes` (default, offline): real news articles, AI-or-human essays and Yelp reviews shipped inside the
  `sae-probes` package;
- a local file: `.txt` (documents separated by a blank line), `.jsonl` (a `text` field per line) or `.parquet`
  (a `text` column);
- anything else is taken as a Hugging Face dataset name with a `text` column (needs hub access).
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path

from tsae_evals.errors import UsageError

DEFAULT_DATASET = "sae-probes"
# Long-form text first: windows of 128 tokens need documents of several hundred characters.
SAE_PROBES_CORPUS = ("100_news_fake", "94_ai_gen", "111_yelp_data")
_LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclass(frozen=True)
class Documents:
    """Whole documents in a seeded order, with the name of their source."""

    source: str
    """The `--dataset` value the documents came from."""
    texts: list[str]
    """The documents, shuffled."""
    seed: int
    """Seed of the shuffle."""


def _sae_probes_texts() -> list[str]:
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("sae_probes")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the default dataset needs the package sae-probes", "run `bash scripts/setup.sh`")
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data" / "cleaned_data"
    texts: list[str] = []
    for tag in SAE_PROBES_CORPUS:
        frame = pd.read_csv(data_dir / f"{tag}.csv.zst", compression="zstd")
        texts.extend(str(t) for t in frame["prompt"].dropna())
    return texts


def _local_texts(path: Path) -> list[str]:
    try:
        if path.suffix == ".txt":
            return [block.strip() for block in path.read_text(encoding="utf-8").split("\n\n") if block.strip()]
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as handle:
                rows = [json.loads(line) for line in handle if line.strip()]
            return [str(row["text"]) for row in rows]
        import pandas as pd

        return [str(t) for t in pd.read_parquet(path, columns=["text"])["text"].dropna()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise UsageError(
            f"cannot read the dataset file {path}: {type(exc).__name__}: {exc}",
            "give a readable UTF-8 .txt (blank-line separated documents), .jsonl with a 'text' field per line, "
            "or .parquet with a 'text' column",
        ) from exc


def _hub_texts(name: str, max_documents: int) -> list[str]:
    try:
        import datasets

        stream = datasets.load_dataset(name, split="train", streaming=True)
        return [str(row["text"]) for row in itertools.islice(stream, max_documents)]
    except Exception as exc:  # datasets raises many unrelated types for "not reachable" and "not found"
        raise UsageError(
            f"cannot load the Hugging Face dataset {name!r}: {type(exc).__name__}: {exc}",
            f"check the name and hub access, or use the offline default --dataset {DEFAULT_DATASET}, "
            "or a local .txt/.jsonl/.parquet path",
        ) from exc


def load_documents(spec: str = DEFAULT_DATASET, seed: int = 0, max_documents: int = 20_000) -> Documents:
    """Load documents from `spec` and shuffle them with `seed`; empty sources are an error, not an empty run."""
    path = Path(spec).expanduser()
    if spec == DEFAULT_DATASET:
        texts = _sae_probes_texts()
    elif path.suffix in _LOCAL_SUFFIXES or path.exists():
        if not path.is_file():
            raise UsageError(f"dataset file {path} does not exist", "check the path given to --dataset")
        if path.suffix not in _LOCAL_SUFFIXES:
            raise UsageError(f"unsupported dataset file type {path.suffix!r}", "use .txt, .jsonl or .parquet")
        texts = _local_texts(path)
    else:
        texts = _hub_texts(spec, max_documents)
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UsageError(f"dataset {spec!r} holds no text", "point --dataset at a source with non-empty documents")
    random.Random(seed).shuffle(texts)
    return Documents(source=spec, texts=texts[:max_documents], seed=seed)
