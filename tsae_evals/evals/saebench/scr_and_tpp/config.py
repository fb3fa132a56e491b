"""Settings of SAE-Bench's SCR and TPP as we run them; field names are SAE-Bench's where they mean the same."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _SpuriousConfig(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    """Each seed redraws the biographies, SAE-Bench's splits and its probes; metrics are the mean, with the spread
    across seeds beside them (SCR and TPP move a lot under reseeding, Chanin 2026)."""
    train_set_size: int = Field(default=400, ge=8)
    """Training texts per probe (SAE-Bench's meaning; its default 4000)."""
    test_set_size: int = Field(default=200, ge=8)
    """Test texts per probe (SAE-Bench's default 1000)."""
    context_length: int = Field(default=64, ge=8)
    """Tokens per biography (the templated ones are 40-60 tokens; SAE-Bench's default 128)."""
    n_values: list[int] = Field(default_factory=lambda: [2, 5, 10, 20, 50, 100, 500])
    """Numbers of SAE latents ablated (SAE-Bench's thresholds)."""
    probe_epochs: int = Field(default=20, ge=1)
    """Epochs of SAE-Bench's probe training."""
    sae_batch_size: int = Field(default=125, ge=1)
    """Texts per SAE encode."""


class ScrConfig(_SpuriousConfig):
    """SAE-Bench's spurious correlation removal on templated biographies (profession x gender)."""

    profession_pairs: list[tuple[str, str]] = Field(
        default_factory=lambda: [("professor", "nurse"), ("architect", "journalist")]
    )
    """Profession pairs, each spuriously correlated with gender in training (SAE-Bench's first two of four)."""


class TppConfig(_SpuriousConfig):
    """SAE-Bench's targeted probe perturbation on templated biographies."""

    professions: list[str] = Field(
        default_factory=lambda: ["accountant", "architect", "attorney", "dentist", "filmmaker"]
    )
    """Professions probed one against the rest (SAE-Bench's bias-in-bios class set 1)."""
