"""Settings of SAE-Bench's sparse probing as we run it; field names are SAE-Bench's where they mean the same."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tsae_evals.data.labelled import DEFAULT_CLASS_SETS


class SparseProbingConfig(BaseModel):
    """Which labelled sets, how many texts and which k; the probing code is SAE-Bench's, unchanged."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    dataset_names: list[str] = Field(default_factory=lambda: list(DEFAULT_CLASS_SETS))
    """Labelled sets: `sae-probes/<name>` (offline, built from sae-probes' data) or SAE-Bench's hub names."""
    probe_train_set_size: int = Field(default=400, ge=4)
    """Train texts per probe (SAE-Bench's meaning: half positive, half drawn from the other classes; default 4000)."""
    probe_test_set_size: int = Field(default=200, ge=4)
    """Test texts per probe (SAE-Bench's default 1000)."""
    context_length: int | None = Field(default=None, ge=2)
    """Tokens per text (longer texts are cut, shorter ones padded); None: the run's --context-size."""
    k_values: list[int] = Field(default_factory=lambda: [1, 2, 5])
    """Numbers of latents (or model dimensions) the top-k probes may read."""
    sae_batch_size: int = Field(default=125, ge=1)
    """Texts per SAE encode."""
    random_seed: int | None = None
    """Seed of the data draw and probe training; None: the run's --seed."""
