"""Result of the offline topic-unlearning stand-in (not WMDP): per strategy, the change of loss and accuracy on
forget and retain text, their difference, and the same for random latents of matched firing rates."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tsae_evals.evals.topic_unlearning.interventions import STRATEGIES
from tsae_evals.results import EvalResult, MetricCategory, MetricInfo, metric

NOT_WMDP = "offline sae-probes topic stand-in, not WMDP"


class StrategyMetrics(MetricCategory):
    """One strategy's effect on held-out windows (NaN where the SAE does not support the strategy)."""

    delta_loss_forget: float = metric(label="dloss_forget", higher_is_better=True)
    """Mean change of next-token loss (nats) on held-out forget-topic windows (offline topic stand-in, not WMDP)."""
    delta_loss_retain: float = metric(label="dloss_retain", higher_is_better=False)
    """Mean change of next-token loss (nats) on held-out retain windows."""
    delta_accuracy_forget: float = metric(label="dacc_forget", higher_is_better=False)
    """Mean change of top-1 next-token accuracy on held-out forget-topic windows."""
    delta_accuracy_retain: float = metric(label="dacc_retain", higher_is_better=True)
    """Mean change of top-1 next-token accuracy on held-out retain windows."""
    selectivity: float = metric(
        label="selectivity",
        higher_is_better=True,
        headline=True,
        interval=("selectivity_ci_low", "selectivity_ci_high"),
    )
    """delta_loss_forget - delta_loss_retain: how much more the intervention hurts the forget topic than the
    retained ones (offline topic stand-in, not WMDP)."""
    selectivity_ci_low: float = metric(label="selectivity_lo", higher_is_better=None)
    """Lower end of the bootstrap interval of selectivity (evaluation windows resampled, seeded)."""
    selectivity_ci_high: float = metric(label="selectivity_hi", higher_is_better=None)
    """Upper end of that interval."""
    null_delta_loss_forget: float = metric(label="null_dloss_forget", higher_is_better=None)
    """delta_loss_forget of the control: the same intervention on random latents of matched firing rates."""
    null_delta_loss_retain: float = metric(label="null_dloss_retain", higher_is_better=None)
    """delta_loss_retain of the control."""
    null_delta_accuracy_forget: float = metric(label="null_dacc_forget", higher_is_better=None)
    """delta_accuracy_forget of the control."""
    null_delta_accuracy_retain: float = metric(label="null_dacc_retain", higher_is_better=None)
    """delta_accuracy_retain of the control."""
    null_selectivity: float = metric(label="null_selectivity", higher_is_better=None)
    """selectivity of the control: what clamping as many latents that fire as often does without topic selection."""
    selectivity_over_null: float = metric(
        label="sel_over_null",
        higher_is_better=True,
        headline=True,
        interval=("selectivity_over_null_ci_low", "selectivity_over_null_ci_high"),
    )
    """selectivity - null_selectivity (per window, then averaged): the forget-specificity owed to the selection."""
    selectivity_over_null_ci_low: float = metric(label="sel_over_null_lo", higher_is_better=None)
    """Lower end of the bootstrap interval of selectivity_over_null (same resamples as selectivity's)."""
    selectivity_over_null_ci_high: float = metric(label="sel_over_null_hi", higher_is_better=None)
    """Upper end of that interval."""

    @classmethod
    def not_applicable(cls) -> StrategyMetrics:
        """Every metric NaN: the SAE has no such strategy."""
        return cls(**dict.fromkeys(cls.model_fields, float("nan")))


class SelectionMetrics(MetricCategory):
    n_latents: int = metric(label="n_latents", higher_is_better=None, headline=True)
    """Latents selected (up to n_latents; fewer when fewer fire rarely enough on retain text)."""
    n_null_latents: int = metric(label="n_null_latents", higher_is_better=None)
    """Latents in the random control (as many as selected unless the alive latents ran out)."""
    clamp_value: float = metric(label="clamp_value", higher_is_better=None)
    """Value the chosen latents are set to (negative)."""
    forget_rate: float = metric(label="forget_rate", higher_is_better=None)
    """Mean firing rate of the chosen latents on the forget selection text."""
    retain_rate: float = metric(label="retain_rate", higher_is_better=None)
    """Mean firing rate of the chosen latents on the retain selection text."""
    null_forget_rate: float = metric(label="null_forget_rate", higher_is_better=None)
    """Mean firing rate of the control's latents on the forget selection text."""
    null_retain_rate: float = metric(label="null_retain_rate", higher_is_better=None)
    """Mean firing rate of the control's latents on the retain selection text."""


class BaselineMetrics(MetricCategory):
    loss_forget: float = metric(label="loss_forget", higher_is_better=None)
    """Model's mean next-token loss on the held-out forget windows, no intervention."""
    loss_retain: float = metric(label="loss_retain", higher_is_better=None)
    """The same on the held-out retain windows."""
    accuracy_forget: float = metric(label="acc_forget", higher_is_better=None)
    """Model's top-1 next-token accuracy on the held-out forget windows, no intervention."""
    accuracy_retain: float = metric(label="acc_retain", higher_is_better=None)
    """The same on the held-out retain windows."""


class TopicUnlearningMetrics(MetricCategory):
    selection: SelectionMetrics
    """The latents chosen and the control's."""
    baseline: BaselineMetrics
    """The model untouched."""
    clamp: StrategyMetrics
    """Chosen latents set to the clamp value where they fire (every SAE)."""
    pattern: StrategyMetrics
    """Set where the SAE's temporal context drives them (SAEs with `intervene` only, else NaN)."""
    hybrid: StrategyMetrics
    """Set where they fire or are driven (SAEs with `intervene` only, else NaN)."""


class LatentRow(BaseModel):
    """One intervened latent."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    latent: int
    """Index."""
    role: str
    """chosen (selected for the forget topic) or null (the random control)."""
    forget_rate: float
    """Firing rate on the forget selection text."""
    retain_rate: float
    """Firing rate on the retain selection text."""


class TopicUnlearningResult(EvalResult):
    """Offline topic-unlearning stand-in (one sae-probes class forgotten, the others retained), never WMDP: the
    clamp, pattern and hybrid interventions against a firing-rate-matched random-latent control."""

    metrics: TopicUnlearningMetrics
    """SAE-Bench metric categories."""
    strategies_run: list[str]
    """Strategies computed for this SAE; the others are NaN."""
    latents: list[LatentRow]
    """The chosen latents, then the control's."""
    dataset: str
    """The sae-probes topic set."""
    forget_class: str
    """Its class forgotten."""
    retain_classes: list[str]
    """Its classes retained."""
    n_windows: dict[str, int]
    """Windows per split and side (selection_forget, selection_retain, eval_forget, eval_retain)."""

    def metric_info(self) -> dict[str, MetricInfo]:
        """The base declarations, with each strategy's labels and descriptions prefixed by its name."""
        info = super().metric_info()
        for key, declared in info.items():
            category = key.split(".", 1)[0]
            if category in STRATEGIES:
                info[key] = declared.model_copy(
                    update={
                        "label": f"{category}_{declared.label}",
                        "description": f"{category}: {declared.description}",
                    }
                )
        return info

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.latents]

    def unstructured(self) -> dict[str, Any]:
        return {
            "note": NOT_WMDP,
            "strategies_run": self.strategies_run,
            "dataset": f"sae-probes/{self.dataset}",
            "forget_class": self.forget_class,
            "retain_classes": self.retain_classes,
            "n_windows": self.n_windows,
        }
