"""Settings of SAE-Bench's sae-probes wrapper as we run it; field names are SAE-Bench's where they mean the same."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_DATASETS = (
    "5_hist_fig_ismale",
    "7_hist_fig_ispolitician",
    "123_world_country_United_Kingdom",
    "127_art_type_song",
    "87_glue_cola",
    "92_glue_sst2",
    "21_headline_istrump",
)
"""Short texts (names, titles, sentences, headlines): model activations for all seven cost about as much as one
set of long articles. SAE-Bench's default is all 113 binary sets, which on a CPU takes hours."""


class SparseProbingSaeProbesConfig(BaseModel):
    """Which sae-probes sets and which k; probing is sae-probes' own, called through SAE-Bench's wrapper."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    dataset_names: list[str] = Field(default_factory=lambda: list(DEFAULT_DATASETS))
    """sae-probes binary sets by numbered tag (e.g. `5_hist_fig_ismale`); their data ships with the package."""
    ks: list[int] = Field(default_factory=lambda: [1, 2, 5])
    """Numbers of latents the top-k probes may read."""
    reg_type: Literal["l1", "l2"] = "l1"
    """Regularisation of the SAE probes."""
    binarize: bool = False
    """Probe on whether each latent fires instead of on its activation."""
    include_llm_baseline: bool = True
    """Also fit sae-probes' logistic-regression baseline on the model's own activations (the comparison)."""
    max_seq_len: int | None = Field(default=None, ge=2)
    """Tokens per text when collecting the model's activations (sae-probes reads the last one); None: the run's
    --context-size (sae-probes' default is 1024)."""
    random_seed: int | None = None
    """Seed of sae-probes' splits and probes; None: the run's --seed."""
