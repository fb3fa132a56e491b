"""Result of the subject-verb agreement probe: the gate, subject-number probes at three readouts with their
baselines, the carry curve, attractor susceptibility and the causal check."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tsae_evals.probing.result import (
    CarryMetrics,
    CarryRow,
    GateMetrics,
    ProbeAccuracyMetrics,
    ProbeEvalResult,
)
from tsae_evals.results import MetricCategory, metric


class SusceptibilityMetrics(MetricCategory):
    """Attractor susceptibility: accuracy on congruent minus incongruent attractor items (positive: the attractor
    pulls towards its own number)."""

    gate_congruent: float = metric(label="gate_congruent", higher_is_better=None)
    """The model's gate accuracy on items whose attractor has the subject's number."""
    gate_incongruent: float = metric(label="gate_incongruent", higher_is_better=None)
    """The model's gate accuracy on items whose attractor has the other number."""
    gate_susceptibility: float = metric(label="gate_susceptibility", higher_is_better=None, headline=True)
    """gate_congruent - gate_incongruent: how much attractors of the other number mislead the model itself."""
    probe_congruent: float = metric(label="probe_congruent", higher_is_better=None)
    """Test accuracy of the top-`readout_k` SAE probe at the pre-verb token on congruent items (gated-correct)."""
    probe_incongruent: float = metric(label="probe_incongruent", higher_is_better=None)
    """The same on incongruent items."""
    probe_susceptibility: float = metric(label="probe_susceptibility", higher_is_better=False, headline=True)
    """probe_congruent - probe_incongruent: how much the SAE's number latents at the pre-verb token follow the
    attractor instead of the subject (0: not at all)."""
    residual_probe_susceptibility: float = metric(label="resid_probe_susceptibility", higher_is_better=None)
    """The same for the top-`readout_k` residual-dimension probe (the bar)."""
    n_congruent: int = metric(label="n_congruent", higher_is_better=None)
    """Gated-correct test items with a congruent attractor."""
    n_incongruent: int = metric(label="n_incongruent", higher_is_better=None)
    """Gated-correct test items with an incongruent attractor."""


class CausalMetrics(MetricCategory):
    """Ablating the top number latents at the pre-verb token (spliced back with the SAE's error term): how much
    does the model's preference for the agreeing verb drop, against ablating as many random active latents?"""

    k: int = metric(label="causal_k", higher_is_better=None)
    """Latents ablated (the top-k by mean difference at the pre-verb token on the train items)."""
    n_items: int = metric(label="causal_n", higher_is_better=None)
    """Gated-correct test items the check ran on."""
    clean_logit_diff: float = metric(label="causal_clean_diff", higher_is_better=None)
    """Mean logit(correct) - logit(wrong) on those items without an edit."""
    logit_diff_drop: float = metric(label="causal_drop", higher_is_better=True, headline=True)
    """Mean drop of logit(correct) - logit(wrong) when the top-k number latents are set to 0."""
    flip_fraction: float = metric(label="causal_flips", higher_is_better=True)
    """Fraction of items whose preference flips to the wrong verb under that ablation."""
    random_logit_diff_drop: float = metric(label="causal_random_drop", higher_is_better=None)
    """The same drop for k random latents active at the pre-verb token on these items (mean over draws)."""
    random_flip_fraction: float = metric(label="causal_random_flips", higher_is_better=None)
    """Flip fraction under the random ablations (mean over draws)."""
    drop_over_random: float = metric(label="causal_drop_over_random", higher_is_better=True, headline=True)
    """logit_diff_drop - random_logit_diff_drop: the part of the effect owed to choosing number latents."""


class AgreementMetrics(MetricCategory):
    gate: GateMetrics
    """The model's own agreement accuracy."""
    subject: ProbeAccuracyMetrics
    """Subject number read at the subject noun."""
    attractor: ProbeAccuracyMetrics
    """Subject number read at the attractor noun (templates with an attractor)."""
    pre_verb: ProbeAccuracyMetrics
    """Subject number read at the last token before the verb."""
    carry: CarryMetrics
    """The subject probe carried 1..carry_max_offset tokens on."""
    susceptibility: SusceptibilityMetrics
    """Congruent minus incongruent attractor accuracy."""
    causal: CausalMetrics
    """Ablating the pre-verb number latents."""


class CausalRow(BaseModel):
    """The causal check at one k."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    k: int
    """Latents ablated."""
    latents: list[int]
    """The top-k number latents, largest mean difference first."""
    logit_diff_drop: float
    """Mean drop of the logit difference."""
    flip_fraction: float
    """Fraction of items whose preference flips."""
    random_logit_diff_drop: float
    """The same for k random active latents (mean over draws)."""
    random_flip_fraction: float
    """Flip fraction under the random ablations."""


class PartRow(BaseModel):
    """The gate and the pre-verb SAE probe on one template and attractor condition."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    template: str
    """Template id."""
    condition: str
    """congruent, incongruent or none (no attractor)."""
    gate_n: int
    """Gated items."""
    gate_accuracy: float
    """The model's accuracy."""
    probe_n: int
    """Gated-correct test items."""
    probe_accuracy: float
    """Top-`readout_k` SAE probe accuracy at the pre-verb token."""


class AgreementResult(ProbeEvalResult):
    """What `agreement` returns."""

    headline_readouts: ClassVar[tuple[str, ...]] = ("pre_verb",)

    metrics: AgreementMetrics
    """SAE-Bench metric categories."""
    carry_curve: list[CarryRow]
    """The carry curve by offset."""
    causal_rows: list[CausalRow]
    """The causal check at every k of `causal_k`."""
    parts: list[PartRow]
    """Gate and probe per template and condition."""
    top_latents: dict[str, list[int]]
    """Readout -> its top-20 SAE latents by mean difference on the train items."""
    sae_l0: float
    """The SAE's mean L0 on the items' text tokens (the random SAE's TopK)."""

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.carry_curve]

    def unstructured(self) -> dict[str, Any]:
        return {
            **super().unstructured(),
            "causal": [row.model_dump() for row in self.causal_rows],
            "parts": [row.model_dump() for row in self.parts],
            "top_latents": self.top_latents,
            "sae_l0": self.sae_l0,
        }
