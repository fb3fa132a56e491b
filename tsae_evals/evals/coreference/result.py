"""Result of the coreference probe: the gate, antecedent probes at the pronoun and the 1-3 tokens after it on
unambiguous and ambiguous items with their baselines, the ambiguity contrast and the pronoun binding score."""

from __future__ import annotations

from typing import Any, ClassVar

from tsae_evals.probing.result import GateMetrics, ProbeAccuracyMetrics, ProbeEvalResult
from tsae_evals.results import MetricCategory, metric

OFFSETS = (0, 1, 2, 3)
"""Readouts: the pronoun (0) and the 1, 2 and 3 tokens after it."""
CONDITIONS = ("unambiguous", "ambiguous")
READOUT_PREFIX = {"unambiguous": "unamb", "ambiguous": "amb"}


def readout_name(condition: str, offset: int) -> str:
    """The metric category of one readout: `unamb_pronoun`, `amb_plus_2`, ..."""
    return f"{READOUT_PREFIX[condition]}_{'pronoun' if offset == 0 else f'plus_{offset}'}"


class GateDetailMetrics(MetricCategory):
    """The gate by condition, and the per-item gate that the pair gate corrects."""

    unambiguous_accuracy: float = metric(label="gate_unamb", higher_is_better=True, headline=True)
    """Pair gate on unambiguous items (gender decides): fraction of items whose pair's mean logit(antecedent) -
    logit(distractor) is positive."""
    ambiguous_accuracy: float = metric(label="gate_amb", higher_is_better=True)
    """Pair gate on ambiguous items (the predicate decides)."""
    item_accuracy: float = metric(label="gate_item_acc", higher_is_better=None)
    """Per-item gate over all gated items (each item's own logit difference > 0, not corrected by its pair)."""
    first_mention_item_accuracy: float = metric(label="gate_item_first", higher_is_better=None)
    """Per-item gate on items whose antecedent is the first-mentioned person (label 1)."""
    second_mention_item_accuracy: float = metric(label="gate_item_second", higher_is_better=None)
    """Per-item gate on items whose antecedent is the second-mentioned person (label 0); far above the first's:
    the model answers with the nearer name."""
    n_probe_unambiguous: int = metric(label="n_probe_unamb", higher_is_better=None)
    """Unambiguous items the probes read (pair gate passed), train and test."""
    n_probe_ambiguous: int = metric(label="n_probe_amb", higher_is_better=None)
    """Ambiguous items the probes read (all, or the gate-passing ones with `gate_ambiguous`)."""


class AmbiguityMetrics(MetricCategory):
    """Unambiguous minus ambiguous antecedent decodability: up to the pronoun only gender can tell the antecedent,
    so the gap at the pronoun is what the SAE's latents carry of the gender-based binding."""

    k: int = metric(label="amb_k", higher_is_better=None)
    """Latents (and residual dimensions) of the compared probes (`readout_k`)."""
    gap_pronoun: float = metric(label="amb_gap_pronoun", higher_is_better=True, headline=True)
    """Top-k SAE probe test accuracy at the pronoun: unambiguous minus ambiguous."""
    gap_plus_1: float = metric(label="amb_gap_plus_1", higher_is_better=None)
    """The same one token after the pronoun."""
    gap_plus_2: float = metric(label="amb_gap_plus_2", higher_is_better=None)
    """The same two tokens after the pronoun."""
    gap_plus_3: float = metric(label="amb_gap_plus_3", higher_is_better=None)
    """The same three tokens after the pronoun."""
    residual_gap_pronoun: float = metric(label="amb_gap_pronoun_resid", higher_is_better=None)
    """The gap at the pronoun for the top-k residual-dimension probe (the bar)."""
    ambiguous_latency: float = metric(label="amb_latency", higher_is_better=None)
    """First offset (0 = the pronoun, up to 3) where the top-k SAE probe on ambiguous items is decodable (its
    interval's lower end above the majority rate); NaN when it never is."""


class BindingMetrics(MetricCategory):
    """Pronoun binding score: mean over items of cos(f_pronoun, f_antecedent) - cos(f_pronoun, f_distractor), the
    SAE latent vectors at the three words; positive when the pronoun's latents look like its antecedent's."""

    prefix_labels: ClassVar[bool] = True

    score: float = metric(label="score", higher_is_better=True, headline=True, interval=("ci_low", "ci_high"))
    """Mean binding score over the probe items of the condition (train and test: nothing is fitted)."""
    ci_low: float = metric(label="score_lo", higher_is_better=None)
    """Lower end of its bootstrap interval over items."""
    ci_high: float = metric(label="score_hi", higher_is_better=None)
    """Upper end of its bootstrap interval over items."""
    null_quantile: float = metric(label="null_q", higher_is_better=None)
    """The `confidence` quantile of the mean under the null that swaps antecedent and distractor at random per
    item (a sign-flip permutation): a score above it is significant."""
    p_value: float = metric(label="p", higher_is_better=None)
    """One-sided permutation p-value of the score under that null."""
    random_sae_score: float = metric(label="random_sae", higher_is_better=None)
    """The same score with the random SAE's latents (same width, TopK at the SAE's L0)."""
    residual_score: float = metric(label="resid", higher_is_better=None)
    """The same score with the raw residual vectors."""
    n_items: int = metric(label="n", higher_is_better=None)
    """Items scored."""


class CoreferenceMetrics(MetricCategory):
    gate: GateMetrics
    """The model's own answer to "Who ...?", corrected by its minimal pair (see `gate_detail`)."""
    gate_detail: GateDetailMetrics
    """The gate by condition, and uncorrected."""
    unamb_pronoun: ProbeAccuracyMetrics
    """Antecedent (first or second mention) read at the pronoun, unambiguous items."""
    unamb_plus_1: ProbeAccuracyMetrics
    """The same one token after the pronoun."""
    unamb_plus_2: ProbeAccuracyMetrics
    """The same two tokens after the pronoun."""
    unamb_plus_3: ProbeAccuracyMetrics
    """The same three tokens after the pronoun."""
    amb_pronoun: ProbeAccuracyMetrics
    """Antecedent read at the pronoun, ambiguous items (nothing up to here tells it: chance expected)."""
    amb_plus_1: ProbeAccuracyMetrics
    """The same one token after the pronoun (the predicate begins)."""
    amb_plus_2: ProbeAccuracyMetrics
    """The same two tokens after the pronoun."""
    amb_plus_3: ProbeAccuracyMetrics
    """The same three tokens after the pronoun."""
    ambiguity: AmbiguityMetrics
    """Unambiguous minus ambiguous decodability."""
    binding_unamb: BindingMetrics
    """Pronoun binding score on unambiguous items."""
    binding_amb: BindingMetrics
    """The binding score on ambiguous items, read 3 tokens after the pronoun instead of at it (f_pronoun+3), once
    the predicate that decides has been read."""


class CoreferenceResult(ProbeEvalResult):
    """What `coreference` returns."""

    headline_readouts: ClassVar[tuple[str, ...]] = ("unamb_pronoun",)

    metrics: CoreferenceMetrics
    """SAE-Bench metric categories."""
    top_latents: dict[str, list[int]]
    """Readout -> its top-20 SAE latents by mean difference on the train items."""
    sae_l0: float
    """The SAE's mean L0 on the items' text tokens (the random SAE's TopK)."""

    def unstructured(self) -> dict[str, Any]:
        return {**super().unstructured(), "top_latents": self.top_latents, "sae_l0": self.sae_l0}
