"""Result of the causal intervention eval: effect curves by token offset and how long they persist."""

from __future__ import annotations

from typing import Any

from tsae_evals.results import EvalResult, MetricCategory, metric


class LossEffectMetrics(MetricCategory):
    mean_abs_delta_loss_in_span: float = metric(label="dloss_span", higher_is_better=None, headline=True)
    """Mean |change in next-token loss| at the intervened positions."""
    mean_abs_delta_loss_after: float = metric(label="dloss_after", higher_is_better=None, headline=True)
    """Mean |change in next-token loss| at the `max_offset` positions after the span."""
    persistence_tokens: int = metric(label="persist_tokens", higher_is_better=None, headline=True)
    """Last offset after the span where the mean |delta loss| is at least `persistence_fraction` of its peak."""
    control_mean_abs_delta_loss_after: float = metric(label="dloss_after_control", higher_is_better=None)
    """The same after-span effect for a control: random directions of the same norms at the same positions."""
    effect_over_control: float = metric(label="vs_control", higher_is_better=True, headline=True)
    """mean_abs_delta_loss_after / control's: above 1, the latents matter more than arbitrary edits of that size."""


class LatentEffectMetrics(MetricCategory):
    mean_abs_delta_latents_after: float = metric(label="dlatents_after", higher_is_better=None)
    """Mean L1 change of the SAE's own latents after the span when the edited input is re-encoded: zero for
    per-token SAEs by construction; sequence-aware SAEs carry the edit through their context."""
    persistence_tokens: int = metric(label="latent_persist_tokens", higher_is_better=None, headline=True)
    """Last offset after the span where that change is at least `persistence_fraction` of its peak (0 if none)."""


class CausalInterventionsMetrics(MetricCategory):
    loss: LossEffectMetrics
    """Downstream effect on the model's next-token loss."""
    latents: LatentEffectMetrics
    """Effect on the SAE's later latents."""


class OffsetRow(MetricCategory):
    offset: int
    """Tokens after the span's last position (0 = the last intervened position itself)."""
    mean_abs_delta_loss: float
    """Mean over windows of |loss change| at this offset."""
    control_mean_abs_delta_loss: float
    """The same for the random-direction control."""
    mean_abs_delta_latents: float
    """Mean over windows of the L1 change of the latents at this offset."""


class CausalInterventionsResult(EvalResult):
    """What `causal_interventions` returns."""

    metrics: CausalInterventionsMetrics
    """SAE-Bench metric categories."""
    curve: list[OffsetRow]
    """Effect by offset."""
    intervened_latents: list[list[int]]
    """Latents intervened on, per window."""

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.curve]

    def unstructured(self) -> dict[str, Any]:
        return {"intervened_latents": self.intervened_latents}
