"""Result of the homonym disambiguation probe: the gate, sense probes at the homonym (cue before and after it) and
at the gate position with their baselines, the token-embedding control, and the sense-decodability latency."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tsae_evals.probing.result import GateMetrics, GateRow, ProbeAccuracyMetrics, ProbeEvalResult
from tsae_evals.results import MetricCategory, metric


class EmbeddingControlMetrics(MetricCategory):
    """The token-embedding control: a probe on the model's input embedding of the homonym token."""

    accuracy: float = metric(label="embedding_acc", higher_is_better=None, interval=("ci_low", "ci_high"))
    """Test accuracy of the full logistic probe on the homonym token's embedding row (W_E), fitted and scored on
    the same items as the homonym probes (both cue positions). Every homonym carries both senses equally often
    among them, so this is at chance (0.5) by construction: a higher value means the items leak the label."""
    ci_low: float = metric(label="embedding_acc_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    ci_high: float = metric(label="embedding_acc_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    n_test: int = metric(label="embedding_n_test", higher_is_better=None)
    """Test items it was scored on."""


class LatencyMetrics(MetricCategory):
    """How soon after the cue the sense is decodable: a top-k probe fitted and scored at each token offset from the
    cue (offset 0 = the cue's token), on the items the model gets right."""

    k: int = metric(label="latency_k", higher_is_better=None)
    """Latents (and residual dimensions) the latency probes read."""
    threshold: float = metric(label="latency_threshold", higher_is_better=None)
    """The sense counts as decodable where the lower end of a probe's bootstrap interval reaches this."""
    before_sae: float = metric(label="latency_before", higher_is_better=False, headline=True)
    """Cue-before items: the first offset >= 1 after the cue at which the top-k SAE probe is decodable (the lower
    end of its interval at least `threshold`; NaN: at no offset)."""
    before_residual: float = metric(label="latency_before_resid", higher_is_better=None)
    """The same for the top-k residual-dimension probe (the bar)."""
    before_full_residual: float = metric(label="latency_before_full_resid", higher_is_better=None)
    """The same for the full residual probe (the ceiling)."""
    before_sae_mean: float = metric(label="latency_before_mean_acc", higher_is_better=True)
    """Cue-before items: the top-k SAE probe's test accuracy averaged over offsets 1..latency_max_offset (offsets
    with too few test items left out)."""
    after_sae: float = metric(label="latency_after", higher_is_better=False, headline=True)
    """Cue-after items: the first offset >= 1 after the cue at which the top-k SAE probe is decodable (NaN: at no
    offset)."""
    after_residual: float = metric(label="latency_after_resid", higher_is_better=None)
    """The same for the top-k residual-dimension probe (the bar)."""
    after_full_residual: float = metric(label="latency_after_full_resid", higher_is_better=None)
    """The same for the full residual probe (the ceiling)."""
    after_sae_mean: float = metric(label="latency_after_mean_acc", higher_is_better=True)
    """Cue-after items: the top-k SAE probe's test accuracy averaged over offsets 1..latency_max_offset."""
    after_pre_cue_sae: float = metric(label="latency_pre_cue_acc", higher_is_better=None)
    """Cue-after items: the top-k SAE probe's test accuracy averaged over the positions from the homonym up to the
    token before the cue. The text there is the same for both senses, so this is at chance unless the items leak
    the label."""


class DisambiguationMetrics(MetricCategory):
    gate: GateMetrics
    """The model's own preference for the sense's topic word after the prefix."""
    homonym_cue_before: ProbeAccuracyMetrics
    """The sense read at the homonym token of items whose cue comes before it."""
    homonym_cue_after: ProbeAccuracyMetrics
    """The sense read at the homonym token of items whose cue comes after it: the model has not seen the cue yet,
    so every probe is at chance there (a check of the items, not of the SAE)."""
    last: ProbeAccuracyMetrics
    """The sense read at the last prefix token (where the gate reads the next-token logits), all items."""
    embedding: EmbeddingControlMetrics
    """The token-embedding control at the homonym."""
    latency: LatencyMetrics
    """Token offsets from the cue at which the sense becomes decodable."""


class LatencyRow(BaseModel):
    """The latency probes at one token offset from the cue, for one cue position."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    cue_position: str
    """`before` (cue before the homonym) or `after`."""
    offset: int
    """Tokens after the cue (0: the cue's token; negative: between the homonym and the cue)."""
    n_train: int
    """Train items the probes at this offset were fitted on."""
    n_test: int
    """Test items they were scored on."""
    sae_accuracy: float
    """Top-k SAE probe test accuracy."""
    sae_ci_low: float
    """Lower end of its bootstrap interval."""
    sae_ci_high: float
    """Upper end of its bootstrap interval."""
    residual_accuracy: float
    """Top-k residual-dimension probe test accuracy."""
    residual_ci_low: float
    """Lower end of its bootstrap interval."""
    full_residual_accuracy: float
    """Full residual probe test accuracy."""
    full_residual_ci_low: float
    """Lower end of its bootstrap interval."""


class DisambiguationResult(ProbeEvalResult):
    """What `disambiguation` returns."""

    headline_readouts: ClassVar[tuple[str, ...]] = ("homonym_cue_before",)

    metrics: DisambiguationMetrics
    """SAE-Bench metric categories."""
    latency_curve: list[LatencyRow]
    """The latency probes by cue position and offset."""
    gate_by_homonym: list[GateRow]
    """The gate per homonym (items of a user's file without `meta.homonym`: one part, `?`)."""
    top_latents: dict[str, list[int]]
    """Readout -> its top-20 SAE latents by mean difference on the train items."""
    sae_l0: float
    """The SAE's mean L0 on the items' text tokens (the random SAE's TopK)."""
    n_probe_items: int
    """Items the probes read: gated-correct, then balanced per (homonym token, split, template) cell."""

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.latency_curve]

    def unstructured(self) -> dict[str, Any]:
        return {
            **super().unstructured(),
            "gate_by_homonym": [row.model_dump() for row in self.gate_by_homonym],
            "top_latents": self.top_latents,
            "sae_l0": self.sae_l0,
            "n_probe_items": self.n_probe_items,
        }
