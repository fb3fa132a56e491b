"""Settings of the subject-verb agreement probe."""

from __future__ import annotations

from pydantic import Field, field_validator

from tsae_evals.probing.config import ProbeSettings, ProbeSize
from tsae_evals.probing.probes import K_VALUES


class AgreementConfig(ProbeSettings):
    """Subject number probes at the subject, the attractor and the pre-verb token; the carry curve, attractor
    susceptibility and the causal check."""

    n_pairs: int = Field(default=40, ge=2)
    """Minimal pairs (a singular and a plural subject) per template, half train and half test (ignored with
    `items_file`)."""
    readout_k: ProbeSize = 5
    """The probe size (one of 1, 2, 5, 10, 20) of the carry curve, the susceptibility and the headline causal check."""
    carry_max_offset: int = Field(default=4, ge=1)
    """The carry curve follows the subject probe up to this many tokens after the subject (items end earlier:
    each offset is scored on the items still inside their prefix)."""
    causal_k: list[int] = Field(default_factory=lambda: [1, 5, 20])
    """Numbers of top number latents (at the pre-verb token) ablated in the causal check; each is one of 1, 2, 5,
    10, 20."""
    causal_items: int = Field(default=64, ge=1)
    """Test items (the model gets right) the causal check runs on, at most (a seeded sample)."""
    random_draws: int = Field(default=2, ge=1)
    """Random latent sets of the same size ablated as the causal check's control (averaged)."""

    @field_validator("causal_k")
    @classmethod
    def _causal_k(cls, values: list[int]) -> list[int]:
        if not values or any(value not in K_VALUES for value in values):
            raise ValueError(f"causal_k must be a non-empty list of values from {list(K_VALUES)}")
        return sorted(set(values))
