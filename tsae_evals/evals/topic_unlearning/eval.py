"""Offline topic-unlearning stand-in (not WMDP): do the clamp, pattern and hybrid interventions hurt the model on
one topic of sae-probes text more than on the others, and more than clamping random latents would?

1. Documents of the forget class and of the retain classes are shuffled (seeded) and split by document: the first
   give latent-selection windows, the next held-out evaluation windows. Latents are never chosen on measured text.
2. On the selection windows each latent's firing rate is counted (BOS excluded). Chosen: the `n_latents` most
   frequent on forget text among those firing on less than `retain_threshold` of retain tokens (SAE-Bench's rule).
   Control: as many unchosen alive latents, each drawn near one chosen latent's pooled firing rate (seeded).
3. On the evaluation windows the model runs untouched (baseline), then with each strategy's edit spliced in at the
   hook, for the chosen latents and for the control: x' = x + decode(f') - decode(f), i.e. the edited
   reconstruction plus the SAE's error term. Next-token loss and top-1 accuracy are averaged per window over the
   predictions made at text positions; selectivity = delta loss on forget - delta loss on retain, with a seeded
   bootstrap interval over windows.

The run's own windows (`--dataset`) are not used, only their context size and BOS setting: the text is the
sae-probes topic set the config names, recorded in the result's unstructured block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsae_evals.errors import UsageError
from tsae_evals.evals.topic_unlearning.config import TopicUnlearningConfig
from tsae_evals.evals.topic_unlearning.data import topic_texts, topic_windows
from tsae_evals.evals.topic_unlearning.interventions import (
    STRATEGIES,
    WindowScores,
    available_strategies,
    reconstruction_change,
    score_windows,
)
from tsae_evals.evals.topic_unlearning.result import (
    BaselineMetrics,
    LatentRow,
    SelectionMetrics,
    StrategyMetrics,
    TopicUnlearningMetrics,
    TopicUnlearningResult,
)
from tsae_evals.evals.topic_unlearning.selection import (
    FiringCounts,
    bootstrap_difference,
    matched_null,
    select_latents,
)
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext, RunShape


def check(shape: RunShape, cfg: TopicUnlearningConfig) -> None:
    """Refuse an unknown set or class and too few documents before any model loads (document length in tokens is
    known only after tokenising: the eval refuses then)."""
    if shape.context_size - shape.first_text_position < 2:
        raise UsageError(f"context size {shape.context_size} leaves no next-token prediction", "raise --context-size")
    topic_texts(cfg, seed=0)


@register_eval("topic_unlearning_standin", version=1, config=TopicUnlearningConfig, group="analysis", check=check)
def topic_unlearning_standin(ctx: EvalContext, cfg: TopicUnlearningConfig) -> TopicUnlearningResult:
    """Offline topic-unlearning stand-in, not WMDP: clamp, pattern and hybrid interventions on forget vs retain text."""
    check(ctx.run_shape, cfg)
    first = ctx.windows.first_text_position
    windows, retain_classes = topic_windows(
        ctx.model.tokenizer,
        cfg,
        context_size=ctx.windows.context_size,
        prepend_bos=ctx.windows.prepend_bos,
        seed=ctx.seed,
    )
    d_sae = int(ctx.sae.cfg.d_sae)
    forget_counts, retain_counts = FiringCounts.empty(d_sae), FiringCounts.empty(d_sae)
    for counts, tokens in ((forget_counts, windows.selection_forget), (retain_counts, windows.selection_retain)):
        _count_firing(ctx, tokens, counts, first)
    chosen = select_latents(forget_counts.rate, retain_counts.rate, cfg.n_latents, cfg.retain_threshold)
    pooled = (forget_counts.fired + retain_counts.fired) / max(forget_counts.tokens + retain_counts.tokens, 1)
    null = matched_null(pooled, chosen, cfg.null_candidates, ctx.seed)
    scale = forget_counts.mean_activation(chosen) if cfg.value_scale == "mean_activation" else 1.0
    value = -cfg.multiplier * scale if scale else 0.0  # no chosen latent fired: nothing to clamp

    strategies = available_strategies(ctx.sae)
    arms = [(strategy, latents) for strategy in strategies for latents in (chosen, null)]
    forget = _score(ctx, windows.eval_forget, arms, value, first)
    retain = _score(ctx, windows.eval_retain, arms, value, first)
    by_strategy = {}
    for index, strategy in enumerate(STRATEGIES):
        if strategy not in strategies:
            by_strategy[strategy] = StrategyMetrics.not_applicable()
            continue
        arm = 1 + 2 * strategies.index(strategy)  # forget[0] is the baseline; then (chosen, null) per strategy
        by_strategy[strategy] = _strategy_metrics(forget, retain, arm, cfg, seed=ctx.seed + index)

    def mean_rate(counts: FiringCounts, latents: list[int]) -> float:
        return float(counts.rate[latents].mean()) if latents else float("nan")

    metrics = TopicUnlearningMetrics(
        selection=SelectionMetrics(
            n_latents=len(chosen),
            n_null_latents=len(null),
            clamp_value=value,
            forget_rate=mean_rate(forget_counts, chosen),
            retain_rate=mean_rate(retain_counts, chosen),
            null_forget_rate=mean_rate(forget_counts, null),
            null_retain_rate=mean_rate(retain_counts, null),
        ),
        baseline=BaselineMetrics(
            loss_forget=float(forget[0].loss.mean()),
            loss_retain=float(retain[0].loss.mean()),
            accuracy_forget=float(forget[0].accuracy.mean()),
            accuracy_retain=float(retain[0].accuracy.mean()),
        ),
        **by_strategy,
    )
    rows = [
        LatentRow(
            latent=latent,
            role=role,
            forget_rate=float(forget_counts.rate[latent]),
            retain_rate=float(retain_counts.rate[latent]),
        )
        for role, latents in (("chosen", chosen), ("null", null))
        for latent in latents
    ]
    return TopicUnlearningResult(
        metrics=metrics,
        strategies_run=list(strategies),
        latents=rows,
        dataset=cfg.dataset,
        forget_class=cfg.forget_class,
        retain_classes=retain_classes,
        n_windows={
            "selection_forget": windows.selection_forget.shape[0],
            "selection_retain": windows.selection_retain.shape[0],
            "eval_forget": windows.eval_forget.shape[0],
            "eval_retain": windows.eval_retain.shape[0],
        },
    )


def _count_firing(ctx: EvalContext, tokens: torch.Tensor, counts: FiringCounts, first: int) -> None:
    """Add the firing of every latent on `tokens` (whole windows encoded, BOS position not counted)."""
    import torch

    for batch in tokens.split(ctx.batch_size):
        with torch.no_grad():
            latents = ctx.sae.encode(ctx.hook_activations(batch))
        counts.add(latents[:, first:])


def _score(
    ctx: EvalContext, tokens: torch.Tensor, arms: list[tuple[str, list[int]]], value: float, first: int
) -> list[WindowScores]:
    """Per-window scores of the baseline, then of each (strategy, latents) arm, over all of `tokens`."""
    import torch

    parts: list[list[WindowScores]] = [[] for _ in range(1 + len(arms))]
    for batch in tokens.split(ctx.batch_size):
        batch = batch.to(ctx.device)
        x = ctx.hook_activations(batch)
        parts[0].append(score_windows(ctx.model, batch, ctx.hook_name, None, first))
        for index, (strategy, latents) in enumerate(arms, start=1):
            if not latents:  # nothing to edit: the splice would add exactly zero (see interventions)
                parts[index].append(parts[0][-1])
                continue
            change = reconstruction_change(ctx.sae, x, latents, value, strategy, first)
            parts[index].append(score_windows(ctx.model, batch, ctx.hook_name, change, first))
    return [WindowScores(torch.cat([p.loss for p in part]), torch.cat([p.accuracy for p in part])) for part in parts]


def _strategy_metrics(
    forget: list[WindowScores], retain: list[WindowScores], arm: int, cfg: TopicUnlearningConfig, seed: int
) -> StrategyMetrics:
    """Deltas against the baseline (arm 0) for the chosen latents (`arm`) and the control (`arm + 1`)."""
    delta_forget, delta_retain = forget[arm].loss - forget[0].loss, retain[arm].loss - retain[0].loss
    null_forget, null_retain = forget[arm + 1].loss - forget[0].loss, retain[arm + 1].loss - retain[0].loss
    # Same seed: both intervals come from the same resampled windows.
    low, high = bootstrap_difference(delta_forget, delta_retain, cfg.n_bootstrap, cfg.confidence, seed)
    over_low, over_high = bootstrap_difference(
        delta_forget - null_forget, delta_retain - null_retain, cfg.n_bootstrap, cfg.confidence, seed
    )
    selectivity = float(delta_forget.mean() - delta_retain.mean())
    null_selectivity = float(null_forget.mean() - null_retain.mean())
    return StrategyMetrics(
        delta_loss_forget=float(delta_forget.mean()),
        delta_loss_retain=float(delta_retain.mean()),
        delta_accuracy_forget=float((forget[arm].accuracy - forget[0].accuracy).mean()),
        delta_accuracy_retain=float((retain[arm].accuracy - retain[0].accuracy).mean()),
        selectivity=selectivity,
        selectivity_ci_low=low,
        selectivity_ci_high=high,
        null_delta_loss_forget=float(null_forget.mean()),
        null_delta_loss_retain=float(null_retain.mean()),
        null_delta_accuracy_forget=float((forget[arm + 1].accuracy - forget[0].accuracy).mean()),
        null_delta_accuracy_retain=float((retain[arm + 1].accuracy - retain[0].accuracy).mean()),
        null_selectivity=null_selectivity,
        selectivity_over_null=selectivity - null_selectivity,
        selectivity_over_null_ci_low=over_low,
        selectivity_over_null_ci_high=over_high,
    )
