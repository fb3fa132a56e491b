"""Result of SAE-Bench's core eval, kept in SAE-Bench's own output layout so its tools read it."""

from __future__ import annotations

from typing import ClassVar

from tsae_evals.evals.saebench.adapter import SaeBenchResult

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


class CoreResult(SaeBenchResult):
    """SAE-Bench `CoreEvalOutput` sections: metric categories and per-latent feature metrics (the details)."""

    OUTPUT: ClassVar[str] = "sae_bench.evals.core.eval_output.CoreEvalOutput"
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]] = DECLARED
