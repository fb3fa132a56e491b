"""Result of the causal intervention eval: effect curves by token offset and how long they persist."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Metrics(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class LossEffectMetrics(_Metrics):
    mean_abs_delta_loss_in_span: float
    """Mean |change in next-token loss| at the intervened positions."""
    mean_abs_delta_loss_after: float
    """Mean |change in next-token loss| at the `max_offset` positions after the span."""
    persistence_tokens: int
    """Last offset after the span where the mean |delta loss| is at least `persistence_fraction` of its peak."""
    control_mean_abs_delta_loss_after: float
    """The same after-span effect for a control: random directions of the same norms at the same positions."""
    effect_over_control: float
    """mean_abs_delta_loss_after / control's: above 1, the latents matter more than arbitrary edits of that size."""


class LatentEffectMetrics(_Metrics):
    mean_abs_delta_latents_after: float
    """Mean L1 change of the SAE's own latents after the span when the edited input is re-encoded: zero for
    per-token SAEs by construction; sequence-aware SAEs carry the edit through their context."""
    persistence_tokens: int
    """Last offset after the span where that change is at least `persistence_fraction` of its peak (0 if none)."""


class CausalInterventionsMetrics(_Metrics):
    loss: LossEffectMetrics
    """Downstream effect on the model's next-token loss."""
    latents: LatentEffectMetrics
    """Effect on the SAE's later latents."""


class OffsetRow(_Metrics):
    offset: int
    """Tokens after the span's last position (0 = the last intervened position itself)."""
    mean_abs_delta_loss: float
    """Mean over windows of |loss change| at this offset."""
    control_mean_abs_delta_loss: float
    """The same for the random-direction control."""
    mean_abs_delta_latents: float
    """Mean over windows of the L1 change of the latents at this offset."""


class CausalInterventionsResult(BaseModel):
    """What `causal_interventions` returns."""

    metrics: CausalInterventionsMetrics
    """SAE-Bench metric categories."""
    curve: list[OffsetRow]
    """Effect by offset."""
    intervened_latents: list[list[int]]
    """Latents intervened on, per window."""

    def metrics_dict(self) -> dict[str, dict[str, Any]]:
        return self.metrics.model_dump()

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.curve]

    def unstructured(self) -> dict[str, Any]:
        return {"intervened_latents": self.intervened_latents}

    def summary(self) -> dict[str, float | int | str | None]:
        return {
            "dloss_span": self.metrics.loss.mean_abs_delta_loss_in_span,
            "dloss_after": self.metrics.loss.mean_abs_delta_loss_after,
            "vs_control": self.metrics.loss.effect_over_control,
            "persist_tok": self.metrics.loss.persistence_tokens,
            "latent_persist": self.metrics.latents.persistence_tokens,
        }
