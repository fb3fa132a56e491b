"""Settings of SAE-Bench's unlearning as we run it; field names are SAE-Bench's where they mean the same."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# SAE-Bench's `UnlearningEvalConfig` defaults: the forget set first, then the MMLU subsets whose accuracy must hold.
DEFAULT_DATASETS = (
    "wmdp-bio",
    "high_school_us_history",
    "college_computer_science",
    "high_school_geography",
    "human_aging",
)


class UnlearningConfig(BaseModel):
    """Where the user's copies of the data are, and SAE-Bench's sweep; the unlearning code is SAE-Bench's, unchanged."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    forget_corpus_path: Path | None = None
    """WMDP's `bio-forget-corpus.jsonl` (gated: request it via huggingface.co/datasets/cais/wmdp-corpora), one JSON
    object with a `text` field per line."""
    retain_corpus_path: Path | None = None
    """The wikitext-2-raw-v1 test split (`.jsonl` or `.parquet` with a `text` column), SAE-Bench's retain corpus."""
    data_dir: Path | None = None
    """Folder with one question file per dataset name: `<name>.jsonl`, `<name>.parquet` or the hub's
    `<name>/test-*.parquet` (cais/wmdp, cais/mmlu), with `question`, `choices` (4 strings) and `answer` (0-3)."""
    instruction_tuned: bool | None = None
    """Whether the model is instruction-tuned; None: judged from its name ("it", SAE-Bench's rule, or "instruct")."""
    dataset_names: list[str] = Field(default_factory=lambda: list(DEFAULT_DATASETS), min_length=2)
    """`wmdp-bio` (to unlearn) and the MMLU subsets to retain."""
    retain_thresholds: list[float] = Field(default_factory=lambda: [0.001, 0.01], min_length=1)
    """Latents firing more often than this on the retain corpus are never clamped."""
    n_features_list: list[int] = Field(default_factory=lambda: [10, 20], min_length=1)
    """How many of the top forget-corpus latents to clamp, one sweep point each."""
    multipliers: list[int] = Field(default_factory=lambda: [25, 50, 100, 200], min_length=1)
    """Negative values the clamped latents are set to, one sweep point each."""
    dataset_size: int = Field(default=1024, ge=1)
    """Sequences per corpus when measuring how often each latent fires."""
    seq_len: int = Field(default=1024, ge=2)
    """Tokens per sequence when measuring how often each latent fires (at most the model's context)."""
    target_metric: Literal["correct", "correct-iff-question"] = "correct"
    """Which questions count: those the model gets right under all 24 choice orders (SAE-Bench's other two names
    point at files it never writes)."""
    llm_batch_size: int | None = Field(default=None, ge=1)
    """Sequences per model forward (questions go twice as many); None: SAE-Bench's choice for the model (4 for
    gemma-2-2b-it), else the run's --batch-size."""
    random_seed: int | None = None
    """Seed of the corpus draw and shuffles; None: the run's --seed."""
