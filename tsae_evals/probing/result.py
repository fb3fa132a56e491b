"""Result pieces every probe eval shares, so agreement, coreference and disambiguation read alike: the behavioural
gate, the probe accuracies at one readout (k in K_VALUES, bootstrap intervals, the four baselines), the carry curve,
and a result base that prefixes each readout's labels with its category name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tsae_evals.results import EvalResult, MetricCategory, MetricInfo, metric

if TYPE_CHECKING:
    import torch

    from tsae_evals.probing.encode import EncodedItems
    from tsae_evals.probing.items import ProbeItem
    from tsae_evals.probing.probes import Accuracy, CarryCurve, ReadoutScores


class GateMetrics(MetricCategory):
    """The behavioural gate: does the model itself prefer the correct continuation?"""

    accuracy: float = metric(label="gate_acc", higher_is_better=True, headline=True)
    """Fraction of gated items (kept after the tokenization checks) where logit(correct) > logit(wrong) after the
    prefix: the model's own accuracy. Probes read only the items it gets right."""
    mean_logit_diff: float = metric(label="gate_logit_diff", higher_is_better=True)
    """Mean logit(correct) - logit(wrong) over the gated items."""
    n_items: int = metric(label="n_items", higher_is_better=None)
    """Items kept after the tokenization checks."""
    n_gated_correct: int = metric(label="n_gate_correct", higher_is_better=None)
    """Kept items the model gets right (the probes' items, train and test)."""
    n_dropped: int = metric(label="n_dropped", higher_is_better=None)
    """Items dropped by the tokenization checks (by reason in the result's `dropped`)."""

    @classmethod
    def measure(cls, encoded: EncodedItems, logit_diff: torch.Tensor) -> GateMetrics:
        gated = encoded.has_gate
        diffs = logit_diff[gated].double()
        return cls(
            accuracy=float((diffs > 0).double().mean()) if diffs.numel() else float("nan"),
            mean_logit_diff=float(diffs.mean()) if diffs.numel() else float("nan"),
            n_items=encoded.n,
            n_gated_correct=int((logit_diff > 0).sum()),
            n_dropped=encoded.n_dropped,
        )


class GateRow(BaseModel):
    """The gate on one part of the items (a template, or a template and condition)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    part: str
    """Template id (and condition, `template/condition`, where the eval splits by one)."""
    n: int
    """Gated items in it."""
    accuracy: float
    """Fraction the model gets right."""
    mean_logit_diff: float
    """Mean logit(correct) - logit(wrong)."""


def gate_rows(
    encoded: EncodedItems, logit_diff: torch.Tensor, part: Callable[[ProbeItem], str] | None = None
) -> list[GateRow]:
    """The gate per template (or per `part(item)`), in first-seen order."""
    name = part or (lambda item: item.template)
    groups: dict[str, list[float]] = {}
    for item, diff, gated in zip(encoded.items, logit_diff.tolist(), encoded.has_gate.tolist(), strict=True):
        if gated:
            groups.setdefault(name(item), []).append(diff)
    return [
        GateRow(
            part=key,
            n=len(values),
            accuracy=sum(value > 0 for value in values) / len(values),
            mean_logit_diff=sum(values) / len(values),
        )
        for key, values in groups.items()
    ]


class ProbeAccuracyMetrics(MetricCategory):
    """Probe test accuracies at one readout position, with SAE-Bench's recipe and the baselines; every accuracy
    carries a seeded bootstrap interval over the test items (the same resamples for all of them)."""

    prefix_labels: ClassVar[bool] = True

    sae_top_1: float = metric(
        label="sae_k1", higher_is_better=True, headline=True, interval=("sae_top_1_ci_low", "sae_top_1_ci_high")
    )
    """Test accuracy of the top-1 SAE latent probe."""
    sae_top_1_ci_low: float = metric(label="sae_k1_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    sae_top_1_ci_high: float = metric(label="sae_k1_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    sae_top_2: float = metric(label="sae_k2", higher_is_better=True, interval=("sae_top_2_ci_low", "sae_top_2_ci_high"))
    """Test accuracy of the top-2 SAE latent probe."""
    sae_top_2_ci_low: float = metric(label="sae_k2_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    sae_top_2_ci_high: float = metric(label="sae_k2_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    sae_top_5: float = metric(
        label="sae_k5", higher_is_better=True, headline=True, interval=("sae_top_5_ci_low", "sae_top_5_ci_high")
    )
    """Test accuracy of the top-5 SAE latent probe."""
    sae_top_5_ci_low: float = metric(label="sae_k5_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    sae_top_5_ci_high: float = metric(label="sae_k5_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    sae_top_10: float = metric(
        label="sae_k10", higher_is_better=True, interval=("sae_top_10_ci_low", "sae_top_10_ci_high")
    )
    """Test accuracy of the top-10 SAE latent probe."""
    sae_top_10_ci_low: float = metric(label="sae_k10_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    sae_top_10_ci_high: float = metric(label="sae_k10_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    sae_top_20: float = metric(
        label="sae_k20", higher_is_better=True, interval=("sae_top_20_ci_low", "sae_top_20_ci_high")
    )
    """Test accuracy of the top-20 SAE latent probe."""
    sae_top_20_ci_low: float = metric(label="sae_k20_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    sae_top_20_ci_high: float = metric(label="sae_k20_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    residual_top_1: float = metric(
        label="resid_k1",
        higher_is_better=None,
        headline=True,
        interval=("residual_top_1_ci_low", "residual_top_1_ci_high"),
    )
    """Test accuracy of the top-1 residual-dimension probe (top-k raw dimensions, the bar the SAE must beat)."""
    residual_top_1_ci_low: float = metric(label="resid_k1_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    residual_top_1_ci_high: float = metric(label="resid_k1_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    residual_top_2: float = metric(
        label="resid_k2", higher_is_better=None, interval=("residual_top_2_ci_low", "residual_top_2_ci_high")
    )
    """Test accuracy of the top-2 residual-dimension probe (top-k raw dimensions, the bar the SAE must beat)."""
    residual_top_2_ci_low: float = metric(label="resid_k2_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    residual_top_2_ci_high: float = metric(label="resid_k2_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    residual_top_5: float = metric(
        label="resid_k5", higher_is_better=None, interval=("residual_top_5_ci_low", "residual_top_5_ci_high")
    )
    """Test accuracy of the top-5 residual-dimension probe (top-k raw dimensions, the bar the SAE must beat)."""
    residual_top_5_ci_low: float = metric(label="resid_k5_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    residual_top_5_ci_high: float = metric(label="resid_k5_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    residual_top_10: float = metric(
        label="resid_k10", higher_is_better=None, interval=("residual_top_10_ci_low", "residual_top_10_ci_high")
    )
    """Test accuracy of the top-10 residual-dimension probe (top-k raw dimensions, the bar the SAE must beat)."""
    residual_top_10_ci_low: float = metric(label="resid_k10_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    residual_top_10_ci_high: float = metric(label="resid_k10_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    residual_top_20: float = metric(
        label="resid_k20", higher_is_better=None, interval=("residual_top_20_ci_low", "residual_top_20_ci_high")
    )
    """Test accuracy of the top-20 residual-dimension probe (top-k raw dimensions, the bar the SAE must beat)."""
    residual_top_20_ci_low: float = metric(label="resid_k20_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    residual_top_20_ci_high: float = metric(label="resid_k20_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    random_sae_top_1: float = metric(
        label="random_sae_k1", higher_is_better=None, interval=("random_sae_top_1_ci_low", "random_sae_top_1_ci_high")
    )
    """Test accuracy of the top-1 random-SAE probe (same width, TopK at the SAE's L0)."""
    random_sae_top_1_ci_low: float = metric(label="random_sae_k1_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    random_sae_top_1_ci_high: float = metric(label="random_sae_k1_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    random_sae_top_2: float = metric(
        label="random_sae_k2", higher_is_better=None, interval=("random_sae_top_2_ci_low", "random_sae_top_2_ci_high")
    )
    """Test accuracy of the top-2 random-SAE probe (same width, TopK at the SAE's L0)."""
    random_sae_top_2_ci_low: float = metric(label="random_sae_k2_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    random_sae_top_2_ci_high: float = metric(label="random_sae_k2_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    random_sae_top_5: float = metric(
        label="random_sae_k5", higher_is_better=None, interval=("random_sae_top_5_ci_low", "random_sae_top_5_ci_high")
    )
    """Test accuracy of the top-5 random-SAE probe (same width, TopK at the SAE's L0)."""
    random_sae_top_5_ci_low: float = metric(label="random_sae_k5_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    random_sae_top_5_ci_high: float = metric(label="random_sae_k5_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    random_sae_top_10: float = metric(
        label="random_sae_k10",
        higher_is_better=None,
        interval=("random_sae_top_10_ci_low", "random_sae_top_10_ci_high"),
    )
    """Test accuracy of the top-10 random-SAE probe (same width, TopK at the SAE's L0)."""
    random_sae_top_10_ci_low: float = metric(label="random_sae_k10_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    random_sae_top_10_ci_high: float = metric(label="random_sae_k10_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    random_sae_top_20: float = metric(
        label="random_sae_k20",
        higher_is_better=None,
        interval=("random_sae_top_20_ci_low", "random_sae_top_20_ci_high"),
    )
    """Test accuracy of the top-20 random-SAE probe (same width, TopK at the SAE's L0)."""
    random_sae_top_20_ci_low: float = metric(label="random_sae_k20_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    random_sae_top_20_ci_high: float = metric(label="random_sae_k20_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    full_residual: float = metric(
        label="full_resid",
        higher_is_better=None,
        headline=True,
        interval=("full_residual_ci_low", "full_residual_ci_high"),
    )
    """Test accuracy of the probe on every residual dimension (the ceiling)."""
    full_residual_ci_low: float = metric(label="full_resid_lo", higher_is_better=None)
    """Lower end of its bootstrap interval."""
    full_residual_ci_high: float = metric(label="full_resid_hi", higher_is_better=None)
    """Upper end of its bootstrap interval."""
    majority: float = metric(label="majority", higher_is_better=None)
    """Test accuracy of always answering the train items' majority label."""
    n_train: int = metric(label="n_train", higher_is_better=None)
    """Train items the probes were fitted on (gated-correct, with this readout)."""
    n_test: int = metric(label="n_test", higher_is_better=None)
    """Test items they were scored on (gated-correct, with this readout)."""

    @classmethod
    def from_scores(cls, scores: ReadoutScores) -> ProbeAccuracyMetrics:
        """The category from `score_readout`'s scores (which must cover K_VALUES)."""
        from tsae_evals.probing.probes import K_VALUES

        values: dict[str, Any] = {}
        for kind, by_k in (("sae", scores.sae), ("residual", scores.residual_top_k), ("random_sae", scores.random_sae)):
            for k in K_VALUES:
                values.update(_accuracy_fields(f"{kind}_top_{k}", by_k[k]))
        values.update(_accuracy_fields("full_residual", scores.full_residual))
        values.update(majority=scores.majority.value, n_train=scores.n_train, n_test=scores.n_test)
        return cls(**values)


def _accuracy_fields(name: str, accuracy: Accuracy) -> dict[str, float]:
    return {name: accuracy.value, f"{name}_ci_low": accuracy.ci_low, f"{name}_ci_high": accuracy.ci_high}


class CarryMetrics(MetricCategory):
    """The carry curve: a probe fitted at one mark, scored with the same features and weights 1..D tokens later."""

    prefix_labels: ClassVar[bool] = True

    k: int = metric(label="k", higher_is_better=None)
    """Latents (and residual dimensions) the carried probe reads."""
    accuracy_offset_1: float = metric(label="acc_1", higher_is_better=True)
    """SAE probe test accuracy one token after the mark."""
    mean_accuracy: float = metric(label="mean_acc", higher_is_better=True, headline=True)
    """SAE probe test accuracy averaged over offsets 1..D (offsets without items left out)."""
    carry_tokens: int = metric(label="tokens", higher_is_better=True, headline=True)
    """Consecutive offsets from 1 at which the SAE probe keeps at least half its above-chance accuracy."""
    residual_mean_accuracy: float = metric(label="mean_acc_resid", higher_is_better=None)
    """The same mean for the top-k residual-dimension probe carried the same way (the bar)."""
    residual_carry_tokens: int = metric(label="tokens_resid", higher_is_better=None)
    """carry_tokens of the top-k residual-dimension probe."""

    @classmethod
    def from_curves(cls, k: int, sae: CarryCurve, residual: CarryCurve) -> CarryMetrics:
        return cls(
            k=k,
            accuracy_offset_1=sae.accuracies[1].value if len(sae.accuracies) > 1 else float("nan"),
            mean_accuracy=_mean_after_fit(sae),
            carry_tokens=sae.carry_tokens,
            residual_mean_accuracy=_mean_after_fit(residual),
            residual_carry_tokens=residual.carry_tokens,
        )


def _mean_after_fit(curve: CarryCurve) -> float:
    values = [a.value for a in curve.accuracies[1:] if a.value == a.value]
    return sum(values) / len(values) if values else float("nan")


class CarryRow(BaseModel):
    """One offset of a carry curve."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    offset: int
    """Tokens after the mark (0: where the probe was fitted)."""
    n: int
    """Test items still inside their prefix at this offset."""
    sae_accuracy: float
    """SAE probe test accuracy."""
    sae_ci_low: float
    """Lower end of its bootstrap interval."""
    sae_ci_high: float
    """Upper end of its bootstrap interval."""
    residual_accuracy: float
    """Top-k residual-dimension probe test accuracy."""


def carry_rows(sae: CarryCurve, residual: CarryCurve) -> list[CarryRow]:
    return [
        CarryRow(
            offset=offset,
            n=a.n,
            sae_accuracy=a.value,
            sae_ci_low=a.ci_low,
            sae_ci_high=a.ci_high,
            residual_accuracy=r.value,
        )
        for offset, (a, r) in enumerate(zip(sae.accuracies, residual.accuracies, strict=True))
    ]


class ProbeEvalResult(EvalResult):
    """Base of the probe evals' results: the tokenization drops, the gate per part and the item set's identity,
    and metric labels of every readout category prefixed with the category's name (`pre_verb_sae_k1`)."""

    headline_readouts: ClassVar[tuple[str, ...]] = ()
    """Readout categories (ProbeAccuracyMetrics) whose headline metrics stay headline; the other readouts' are
    demoted (one or two readouts make a readable summary)."""

    dropped: dict[str, int]
    """Items dropped by the tokenization checks, per reason."""
    gate_by_part: list[GateRow]
    """The gate per template (or template and condition)."""
    items_hash: str
    """Content hash of the item set before the checks (`items_hash`)."""
    items_source: str
    """`generated` (the eval's own templates, with the generator's version) or the items file read."""

    def metric_info(self) -> dict[str, MetricInfo]:
        info = super().metric_info()
        for key, declared in info.items():
            category = key.split(".", 1)[0]
            part = getattr(self.metrics, category)
            if not getattr(type(part), "prefix_labels", False):
                continue
            demoted = isinstance(part, ProbeAccuracyMetrics) and category not in self.headline_readouts
            info[key] = declared.model_copy(
                update={
                    "label": f"{category}_{declared.label}",
                    "description": f"{category}: {declared.description}",
                    "headline": declared.headline and not demoted,
                }
            )
        return info

    def unstructured(self) -> dict[str, Any]:
        return {
            "items_source": self.items_source,
            "items_hash": self.items_hash,
            "dropped": self.dropped,
            "gate_by_part": [row.model_dump() for row in self.gate_by_part],
        }
