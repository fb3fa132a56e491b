"""Result of SAE-Bench's core eval, kept in SAE-Bench's own output layout so its tools read it."""

from __future__ import annotations

from typing import Any

from tsae_evals.results import EvalResult, MetricInfo

# SAE-Bench declares titles and a display flag but no direction; what each metric's better side is, and which
# ones headline a table, is ours to say. Keys are SAE-Bench's `category.metric`.
DECLARED: dict[str, tuple[str, bool | None, bool]] = {
    "sparsity.l0": ("l0", None, True),
    "sparsity.l1": ("l1", None, False),
    "reconstruction_quality.explained_variance": ("expl_var", True, True),
    "reconstruction_quality.explained_variance_legacy": ("expl_var_legacy", True, False),
    "reconstruction_quality.mse": ("mse", False, False),
    "reconstruction_quality.cossim": ("cossim", True, False),
    "model_performance_preservation.ce_loss_score": ("ce_rec", True, True),
    "model_performance_preservation.ce_loss_with_sae": ("ce_with_sae", False, False),
    "model_performance_preservation.ce_loss_without_sae": ("ce_clean", None, False),
    "model_performance_preservation.ce_loss_with_ablation": ("ce_ablated", None, False),
    "model_behavior_preservation.kl_div_score": ("kl_score", True, True),
    "model_behavior_preservation.kl_div_with_sae": ("kl_with_sae", False, False),
    "model_behavior_preservation.kl_div_with_ablation": ("kl_ablated", None, False),
    "shrinkage.l2_ratio": ("l2_ratio", None, False),
    "shrinkage.relative_reconstruction_bias": ("rel_bias", None, False),
    "misc_metrics.frac_alive": ("alive", True, True),
    "misc_metrics.freq_over_1_percent": ("freq_over_1pct", None, False),
    "misc_metrics.freq_over_10_percent": ("freq_over_10pct", False, False),
    "misc_metrics.average_max_encoder_cosine_sim": ("max_enc_cos", False, False),
    "misc_metrics.average_max_decoder_cosine_sim": ("max_dec_cos", False, False),
}


class CoreResult(EvalResult):
    """SAE-Bench `CoreEvalOutput` sections: metric categories and per-latent feature metrics."""

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

    def metric_info(self) -> dict[str, MetricInfo]:
        from sae_bench.evals.core.eval_output import CoreMetricCategories

        info = {}
        for key, (label, higher_is_better, headline) in DECLARED.items():
            category, _, name = key.partition(".")
            # SAE-Bench's output models are pydantic dataclasses: their fields live in `__pydantic_fields__`.
            category_cls = CoreMetricCategories.__pydantic_fields__[category].annotation
            field = category_cls.__pydantic_fields__[name]  # type: ignore[union-attr]
            info[key] = MetricInfo(
                label=label,
                higher_is_better=higher_is_better,
                headline=headline,
                description=field.description or field.title or "",
            )
        return info
