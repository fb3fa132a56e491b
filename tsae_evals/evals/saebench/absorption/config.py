"""Settings of SAE-Bench's first-letter absorption as we run it; field names are SAE-Bench's where they mean the same."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AbsorptionConfig(BaseModel):
    """Which prompt, position, vocabulary and thresholds; the probing and absorption code is SAE-Bench's, unchanged."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    prompt_template: str = "{word} has the first letter:"
    """SAE-Bench's prompt for one word (its ICL examples repeat it with the answer)."""
    prompt_token_pos: int | None = Field(default=None, lt=0)
    """Position, from the prompt's end, of the word's token; None: derived from the model's tokenizer (SAE-Bench
    assumes -6, right for GPT-2-like tokenizers only)."""
    words_per_letter: int | None = Field(default=100, ge=5)
    """At most this many vocabulary words per first letter (a seeded draw); None: SAE-Bench's whole alphabetic
    vocabulary (about 47k words for SmolLM2: hours on a CPU)."""
    max_k_value: int = Field(default=10, ge=1)
    """Largest number of latents a k-sparse probe may read."""
    f1_jump_threshold: float = Field(default=0.03, ge=0)
    """F1 gain from k-1 to k latents that counts as feature splitting."""
    min_GT_probe_f1: float = Field(default=0.6, ge=0, le=1)
    """F1 the ground-truth probe needs on a letter for that letter's feature to count as present."""
    min_feats_for_eval: int = Field(default=20, ge=2, le=26)
    """Letters that must pass `min_GT_probe_f1`; fewer and the eval declines (NaN metrics, counts recorded)."""
    k_sparse_probe_l1_decay: float = Field(default=0.01, ge=0)
    """L1 penalty of the probe that picks each letter's top latents."""
    k_sparse_probe_batch_size: int = Field(default=4096, ge=1)
    """Words per step of that probe's training."""
    k_sparse_probe_num_epochs: int = Field(default=50, ge=1)
    """Epochs of that probe's training."""
    eval_k_sparse_probe_batch_size: int = Field(default=24, ge=1)
    """Words per SAE encode when scoring the k-sparse probes."""
    precalc_k_sparse_probe_sae_acts: bool = False
    """Encode all words once before training the k-sparse probes (faster, more memory)."""
    random_seed: int | None = None
    """Seed of the vocabulary draw, train/test split, ICL examples and probe training; None: the run's --seed."""

    @field_validator("prompt_template")
    @classmethod
    def _has_word(cls, value: str) -> str:
        if "{word}" not in value:
            raise ValueError("prompt_template must contain {word}")
        return value
