"""Result of SAE-Bench's core eval, kept in SAE-Bench's own output models so its tools read it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class CoreResult(BaseModel):
    """SAE-Bench `CoreEvalOutput` sections: metric categories and per-latent feature metrics."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    metrics: dict[str, dict[str, Any]]
    """SAE-Bench's `CoreMetricCategories`, validated by its pydantic model and dumped."""
    feature_metrics: list[dict[str, Any]]
    """SAE-Bench's `CoreFeatureMetric` per latent (density, encoder/decoder norms and similarities)."""
    sae_bench_config: dict[str, Any]
    """The `CoreEvalConfig` handed to SAE-Bench, as it saw it."""

    def metrics_dict(self) -> dict[str, dict[str, Any]]:
        return self.metrics

    def details_list(self) -> list[Any]:
        return self.feature_metrics

    def unstructured(self) -> dict[str, Any]:
        return {"sae_bench_core_config": self.sae_bench_config}

    def summary(self) -> dict[str, float | int | str | None]:
        quality = self.metrics.get("reconstruction_quality", {})
        return {
            "l0": self.metrics.get("sparsity", {}).get("l0"),
            "expl_var": quality.get("explained_variance"),
            "ce_rec": self.metrics.get("model_performance_preservation", {}).get("ce_loss_score"),
            "kl_score": self.metrics.get("model_behavior_preservation", {}).get("kl_div_score"),
            "alive": self.metrics.get("misc_metrics", {}).get("frac_alive"),
        }
