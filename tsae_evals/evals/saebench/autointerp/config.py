"""Settings of SAE-Bench's autointerp as we run it; field names are SAE-Bench's where they mean the same.

The judge is any OpenAI-compatible endpoint. The config names the environment variable that holds its key, never
the key: configs are written into every result file.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AutoInterpConfig(BaseModel):
    """Which endpoint judges, how many latents it explains and scores, and the example counts per latent; the
    explanation and scoring code is SAE-Bench's, unchanged."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 or http://localhost:8000/v1; None: refused."""
    judge_model: str = "gpt-4o-mini"
    """Model the endpoint serves as judge (SAE-Bench hard-codes gpt-4o-mini)."""
    api_key_env: str = Field(default="OPENAI_API_KEY", min_length=1)
    """Name of the environment variable holding the endpoint's API key (the key itself is never stored)."""
    request_timeout_s: float = Field(default=120.0, gt=0)
    """Seconds one API request may take before the client gives up (it retries twice)."""
    n_latents: int = Field(default=8, ge=1)
    """Alive latents drawn at random to explain and score, two API calls each (SAE-Bench's default 1000)."""
    latents: list[int] | None = None
    """Exactly these latents instead of `n_latents` drawn (SAE-Bench's `override_latents`; the draw follows --seed)."""
    dead_latent_threshold: float = Field(default=15, ge=0)
    """Latents firing on fewer of the run's tokens count as dead and are never drawn (SAE-Bench's default, set
    for its 2M tokens; a latent firing barely above it gets inactive "importance-sampled" examples)."""
    buffer: int = Field(default=10, ge=1)
    """Tokens shown either side of an example's chosen token (21-token examples); --context-size must exceed
    twice this."""
    no_overlap: bool = True
    """Top examples never share a window within `buffer` tokens of each other."""
    act_threshold_frac: float = Field(default=0.01, ge=0)
    """A token counts as active above this fraction of the latent's top activation."""
    max_tokens_in_explanation: int = Field(default=30, ge=1)
    """Completion tokens the judge may spend on an explanation."""
    use_demos_in_explanation: bool = True
    """Show the judge example explanations in the explanation prompt."""
    n_top_ex_for_generation: int = Field(default=10, ge=1)
    """Top-activating examples the judge explains from."""
    n_iw_sampled_ex_for_generation: int = Field(default=5, ge=0)
    """Importance-sampled (weaker) activating examples the judge explains from."""
    n_top_ex_for_scoring: int = Field(default=2, ge=0)
    """Top-activating examples among those the judge scores."""
    n_random_ex_for_scoring: int = Field(default=10, ge=0)
    """Random examples (mostly inactive) among those the judge scores."""
    n_iw_sampled_ex_for_scoring: int = Field(default=2, ge=0)
    """Importance-sampled activating examples among those the judge scores."""
