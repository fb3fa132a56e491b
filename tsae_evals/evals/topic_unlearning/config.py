"""Settings of the offline topic-unlearning stand-in: which text to forget, which latents, how hard to clamp."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TopicUnlearningConfig(BaseModel):
    """Forget one class of an offline sae-probes topic set and retain the others: a stand-in, never WMDP."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    dataset: str = "code"
    """Offline sae-probes topic set: `code` (classes C, HTML, Python: source files, long enough for 128-token
    windows) or `ag_news` (classes 0 = world, 1 = sports, 2 = business: articles of about 50 tokens, so only with a
    --context-size of about 48 or less)."""
    forget_class: str = "Python"
    """The class whose text the interventions should hurt (the forget topic)."""
    retain_classes: list[str] = Field(default_factory=list)
    """Classes whose text the interventions should spare; empty: every class of the set but the forget class."""
    n_selection_windows: int = Field(default=128, ge=1)
    """Windows per side (forget, retain) on which latents are selected; one window per document. These run the
    model only up to the hook, so they cost a small fraction of an evaluation window: rare latents' rates need
    the tokens."""
    n_eval_windows: int = Field(default=32, ge=2)
    """Windows per side on which loss and accuracy are measured, from documents the selection never saw."""
    n_latents: int = Field(default=10, ge=0)
    """Latents intervened on: the most frequent on forget text among those rare on retain text (fewer if fewer
    qualify)."""
    retain_threshold: float = Field(default=0.01, ge=0, le=1)
    """A latent qualifies only if it fires on less than this fraction of retain tokens (SAE-Bench's default)."""
    multiplier: float = Field(default=5.0, ge=0)
    """Clamp strength: chosen latents are set to -multiplier x the scale `value_scale` names."""
    value_scale: Literal["mean_activation", "absolute"] = "mean_activation"
    """mean_activation: the chosen latents' mean activation where they fire on the forget selection text (one
    value shared by all of them: `intervene` takes one); absolute: 1, i.e. SAE-Bench's -multiplier."""
    null_candidates: int = Field(default=10, ge=1)
    """The random-latent control draws each of its latents from this many unchosen alive latents nearest in
    firing rate to one chosen latent (seeded)."""
    n_bootstrap: int = Field(default=1000, ge=100)
    """Bootstrap resamples of the evaluation windows for the selectivity intervals."""
    confidence: float = Field(default=0.95, gt=0, lt=1)
    """Coverage of the bootstrap percentile intervals."""
