"""Result of SAE-Bench's first-letter absorption, in its `AbsorptionEvalOutput` layout."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tsae_evals.evals.saebench.adapter import SaeBenchResult


class PromptPosition(BaseModel):
    """Where the word's token sits in SAE-Bench's prompt, as this model's tokenizer splits it."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    prompt_token_pos: int
    """The position used (from the prompt's end)."""
    derived: bool
    """Whether it was derived from the tokenizer (False: set in the config)."""
    saebench_default: int
    """SAE-Bench's assumption (-6)."""
    words_checked: int
    """Vocabulary words whose prompt was tokenized."""
    words_at_position: int
    """Of those, words whose last token sits at `prompt_token_pos`."""
    prompt_tokens: int
    """Tokens of the longest prompt (BOS and ten ICL examples included)."""
    equal_length_prompts: bool
    """Whether every word makes a prompt of the same length (else left padding keeps the position right)."""


class AbsorptionNotes(BaseModel):
    """What a number alone would hide: the prompt position, the vocabulary and, when it declines, why."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    position: PromptPosition | None
    """The prompt position used (None: the vocabulary was too small to build prompts)."""
    vocabulary_words: int
    """Alphabetic vocabulary words probed (after `words_per_letter`)."""
    words_per_letter: dict[str, int]
    """Those words per first letter."""
    probe_f1: dict[str, float]
    """Ground-truth probe F1 per letter on the held-out words (empty if no probe was trained)."""
    letters_passing: int | None
    """Letters whose probe F1 exceeds `min_GT_probe_f1` (None: not probed)."""
    letters_needed: int
    """`min_feats_for_eval`: fewer passing letters and absorption is not measured."""
    declined: str | None = None
    """Why no absorption was measured (None: it was)."""


class AbsorptionResult(SaeBenchResult):
    """SAE-Bench's absorption means over letters, one detail row per letter, our notes as its unstructured output."""

    OUTPUT: ClassVar[str] = "sae_bench.evals.absorption.eval_output.AbsorptionEvalOutput"
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]] = {
        "mean.mean_absorption_fraction_score": ("absorption", False, True),
        "mean.mean_full_absorption_score": ("full_absorption", False, True),
        "mean.mean_num_split_features": ("split_features", None, False),
        "mean.std_dev_absorption_fraction_score": ("absorption_std", None, False),
        "mean.std_dev_full_absorption_score": ("full_absorption_std", None, False),
        "mean.std_dev_num_split_features": ("split_features_std", None, False),
    }

    notes: AbsorptionNotes
    """The same notes, typed (the record keeps them as `eval_result_unstructured`)."""

    def summary(self) -> dict[str, Any]:
        # A decline prints as NaN; the passing-letter count beside it says why.
        return {**super().summary(), "gt_letters": self.notes.letters_passing}
