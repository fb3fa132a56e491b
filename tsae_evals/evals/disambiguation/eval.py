"""Homonym disambiguation: do the SAE's latents carry which sense of a word its context selects, and how soon
after the disambiguating cue?

1. Items (data.py: 30 homonyms, two senses each, 12 frames with the cue before or after the homonym; or the
   config's `items_file`) are tokenised for the model. Items whose homonym is not one token, or whose gate words
   are not, are dropped and counted.
2. One model forward over the items (shared with every other SAE of the run and the other probe evals) gives the
   hook's activations and the gate: logit(this sense's topic word) - logit(the other sense's) after the prefix.
3. The probes read the items the model gets right, balanced again within every (homonym token, split, template)
   cell so that neither the homonym nor the frame tells the label. SAE-Bench's sparse probes (top-k latents by
   mean difference, logistic regression; k in 1, 2, 5, 10, 20), against the full residual, the top-k residual
   dimensions, a random SAE and the majority class, read the sense at the homonym for cue-before items (the
   headline) and cue-after items (at chance by causality), and at the last token. Train and test share no cue
   word. Control: a probe on the model's embedding of the homonym token, at chance by construction.
4. Latency: at each token offset from the cue a top-`latency_k` probe is fitted and scored there; the latency is
   the first offset >= 1 at which the lower end of its bootstrap interval reaches `latency_threshold`. Cue-after
   items are also read from the homonym up to the cue (offsets < 0), where both senses have the same text (each
   generated pair differs only in its cue word).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tsae_evals.errors import UsageError
from tsae_evals.evals.disambiguation.config import DisambiguationConfig
from tsae_evals.evals.disambiguation.data import GENERATOR, drop_split_homonyms, generate_items, subsample
from tsae_evals.evals.disambiguation.result import (
    DisambiguationMetrics,
    DisambiguationResult,
    EmbeddingControlMetrics,
    LatencyMetrics,
    LatencyRow,
)
from tsae_evals.probing.items import read_items
from tsae_evals.probing.result import GateMetrics, ProbeAccuracyMetrics, gate_rows
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext, RunShape
    from tsae_evals.probing.encode import EncodedItems
    from tsae_evals.probing.items import ProbeItem
    from tsae_evals.probing.probes import Accuracy, ReadoutScores

NAN = float("nan")
MARKS = ("homonym", "cue")
"""Marks every item needs."""
HOMONYM_DROP = "homonym_not_one_token"
"""The drop reason this eval adds to the shared tokenization checks'."""
LATENCY_BYTES = 512 * 2**20
"""Latents held at once by the latency readout (offsets are encoded in chunks that fit)."""


def _require_marks(items: list[ProbeItem], source: str) -> None:
    missing = [number for number, item in enumerate(items, 1) if not set(MARKS) <= item.marks.keys()]
    if missing:
        raise UsageError(
            f"{source}: {len(missing)} items lack a `homonym` or `cue` mark (the first is item {missing[0]})",
            "mark the homonym and the cue word in every item (character offset of each word's last character)",
        )


def check(shape: RunShape, cfg: DisambiguationConfig) -> None:
    """A user's items file is read and its marks checked before any model loads."""
    if cfg.items_file is not None:
        _require_marks(read_items(cfg.items_file), str(cfg.items_file))


@register_eval("disambiguation", version=1, config=DisambiguationConfig, group="probes", check=check)
def disambiguation(ctx: EvalContext, cfg: DisambiguationConfig) -> DisambiguationResult:
    """Homonym senses: probes at the homonym (cue before / after), the embedding control, latency after the cue."""
    from tsae_evals.probing.encode import encode_items
    from tsae_evals.probing.forward import item_forward
    from tsae_evals.probing.probes import probe_readouts, score_readout

    items, source = cfg.load_items(lambda: subsample(generate_items(ctx.seed), cfg.max_items, ctx.seed), GENERATOR)
    _require_marks(items, source)
    items, n_split = drop_split_homonyms(items, ctx.model.tokenizer)
    encoded = encode_items(ctx.model.tokenizer, items, ctx.windows.prepend_bos, ctx.model.cfg.n_ctx)
    dropped = {HOMONYM_DROP: n_split, **encoded.dropped}
    if encoded.n == 0:
        return _empty(encoded, cfg, source, dropped)

    forward = item_forward(ctx.model, encoded, [ctx.hook_name], batch_size=cfg.batch_size)
    activations = forward.activations[ctx.hook_name]
    use = balanced_mask(encoded, forward.gate_correct | ~encoded.has_gate, ctx.seed)  # items without a gate: all
    before = encoded.positions["cue"] < encoded.positions["homonym"]
    seed, n_resamples, confidence = ctx.seed, cfg.n_bootstrap, cfg.confidence
    readouts = probe_readouts(
        ctx.sae,
        activations,
        encoded,
        ["homonym", "last"],
        use,
        seed=seed,
        batch_size=cfg.batch_size,
        n_resamples=n_resamples,
        confidence=confidence,
    )
    labels, train = encoded.labels, encoded.is_train

    def at_homonym(group: torch.Tensor) -> ReadoutScores:
        rows = use & group
        return score_readout(
            readouts.latents[:, 0],
            readouts.residual[:, 0],
            readouts.random_latents[:, 0],
            labels,
            train & rows,
            ~train & rows,
            seed=seed,
            n_resamples=n_resamples,
            confidence=confidence,
        )

    scores = {"homonym_cue_before": at_homonym(before), "homonym_cue_after": at_homonym(~before)}
    scores["last"] = readouts.scores["last"]
    curve = latency_curve(ctx, cfg, encoded, activations, use, before)
    gate = GateMetrics.measure(encoded, forward.logit_diff).model_copy(
        update={"n_dropped": encoded.n_dropped + n_split}
    )
    return DisambiguationResult(
        metrics=DisambiguationMetrics(
            gate=gate,
            homonym_cue_before=ProbeAccuracyMetrics.from_scores(scores["homonym_cue_before"]),
            homonym_cue_after=ProbeAccuracyMetrics.from_scores(scores["homonym_cue_after"]),
            last=ProbeAccuracyMetrics.from_scores(scores["last"]),
            embedding=embedding_control(ctx.model, encoded, use, seed=seed, cfg=cfg),
            latency=latency_metrics(curve, cfg),
        ),
        latency_curve=curve,
        gate_by_part=gate_rows(encoded, forward.logit_diff),
        gate_by_homonym=gate_rows(encoded, forward.logit_diff, lambda item: item.meta.get("homonym", "?")),
        top_latents={name: _ranking(score) for name, score in scores.items()},
        sae_l0=readouts.l0,
        n_probe_items=int(use.sum()),
        dropped=dropped,
        items_hash=encoded.source_hash,
        items_source=source,
    )


def balanced_mask(encoded: EncodedItems, correct: torch.Tensor, seed: int) -> torch.Tensor:
    """`[n]` the gated-correct items, then within each (homonym token, split, template) cell as many of each label
    as the rarer label has (a seeded choice): the gate must not let the homonym or the frame tell the label."""
    import torch

    homonym_tokens = encoded.tokens[torch.arange(encoded.n), encoded.positions["homonym"].clamp_min(0)]
    cells: dict[tuple[int, str, str], tuple[list[int], list[int]]] = {}
    for row, item in enumerate(encoded.items):
        if bool(correct[row]):
            key = (int(homonym_tokens[row]), str(item.split), item.template)
            cells.setdefault(key, ([], []))[item.label].append(row)
    rng = random.Random(f"disambiguation-balance-{seed}")
    keep = torch.zeros(encoded.n, dtype=torch.bool)
    for key in sorted(cells):
        zeros, ones = cells[key]
        n = min(len(zeros), len(ones))
        for side in (zeros, ones):
            keep[rng.sample(side, n)] = True
    return keep


def _fit_score(
    features: torch.Tensor,
    labels: torch.Tensor,
    fit: torch.Tensor,
    test: torch.Tensor,
    k: int | None,
    *,
    seed: int,
    cfg: DisambiguationConfig,
) -> Accuracy:
    """Fit SAE-Bench's top-k probe on the `fit` rows and score it on the `test` rows (NaN when it cannot); call
    inside `probing_context`."""
    from tsae_evals.probing.probes import Accuracy, fit_probe

    if not bool(test.any()) or labels[fit].unique().numel() < 2:
        return Accuracy.nan(int(test.sum()))
    probe = fit_probe(features[fit], labels[fit], k)
    return probe.accuracy(
        features[test], labels[test], seed=seed, n_resamples=cfg.n_bootstrap, confidence=cfg.confidence
    )


def embedding_control(
    model: object, encoded: EncodedItems, use: torch.Tensor, *, seed: int, cfg: DisambiguationConfig
) -> EmbeddingControlMetrics:
    """The full probe on the model's embedding row of the homonym token (fitted on train, scored on test)."""
    import torch

    from tsae_evals.probing.probes import Accuracy, bootstrap_accuracy, fit_probe, probing_context

    ids = encoded.tokens[torch.arange(encoded.n), encoded.positions["homonym"].clamp_min(0)]
    embedding = model.W_E.detach()[ids.to(model.W_E.device)].float().cpu()  # type: ignore[attr-defined]
    labels, train = encoded.labels, encoded.is_train
    fit, test = use & train, use & ~train
    accuracy = Accuracy.nan(int(test.sum()))
    if bool(test.any()) and labels[fit].unique().numel() == 2:
        with probing_context():
            probe = fit_probe(embedding[fit], labels[fit], None)
        correct = probe.predict(embedding[test]) == labels[test]
        accuracy = bootstrap_accuracy(correct, seed=seed, n_resamples=cfg.n_bootstrap, confidence=cfg.confidence)
    return EmbeddingControlMetrics(
        accuracy=accuracy.value, ci_low=accuracy.ci_low, ci_high=accuracy.ci_high, n_test=accuracy.n
    )


def latency_curve(
    ctx: EvalContext,
    cfg: DisambiguationConfig,
    encoded: EncodedItems,
    activations: torch.Tensor,
    use: torch.Tensor,
    before: torch.Tensor,
) -> list[LatencyRow]:
    """Top-`latency_k` probes (SAE latents, residual dimensions) and the full residual probe, fitted and scored at
    every token offset from the cue: 0..latency_max_offset for cue-before items; for cue-after items also back to
    the homonym. Offsets are read only inside each item (from its homonym or cue, before its end)."""
    import torch

    from tsae_evals.probing.probes import encode_at, gather, probing_context

    rows = torch.nonzero(use).flatten()
    if rows.numel() == 0:
        return []
    cue, homonym = encoded.positions["cue"][rows], encoded.positions["homonym"][rows]
    is_before = before[rows]
    gaps = (cue - homonym)[~is_before]
    back = min(int(gaps.max()), cfg.latency_max_offset) if gaps.numel() else 0
    offsets = list(range(-back, cfg.latency_max_offset + 1))
    index = cue[:, None] + torch.tensor(offsets)[None, :]
    start = torch.where(is_before, cue, homonym)
    lengths = encoded.lengths[rows]
    valid = (index >= start[:, None]) & (index < lengths[:, None])
    index = torch.where(valid, index, torch.zeros_like(index))
    item_activations = activations[rows]
    labels, train = encoded.labels[rows], encoded.is_train[rows]
    k, seed = cfg.latency_k, ctx.seed

    per_offset = max(1, rows.numel() * int(ctx.sae.cfg.d_sae) * 4)
    chunk = max(1, LATENCY_BYTES // per_offset)
    found: dict[tuple[str, int], LatencyRow] = {}
    for first in range(0, len(offsets), chunk):
        columns = list(range(first, min(first + chunk, len(offsets))))
        latents = encode_at(
            ctx.sae,
            item_activations,
            lengths,
            index[:, columns],
            first_text_position=int(encoded.prepend_bos),
            batch_size=cfg.batch_size,
        ).latents
        residual = gather(item_activations, index[:, columns]).float()
        with probing_context():
            for slot, column in enumerate(columns):
                for name, group in (("before", is_before), ("after", ~is_before)):
                    here = valid[:, column] & group
                    fit, test = here & train, here & ~train
                    if not bool(test.any()):
                        continue
                    sae = _fit_score(latents[:, slot], labels, fit, test, k, seed=seed, cfg=cfg)
                    residual_k = _fit_score(residual[:, slot], labels, fit, test, k, seed=seed, cfg=cfg)
                    full = _fit_score(residual[:, slot], labels, fit, test, None, seed=seed, cfg=cfg)
                    found[(name, offsets[column])] = LatencyRow(
                        cue_position=name,
                        offset=offsets[column],
                        n_train=int(fit.sum()),
                        n_test=int(test.sum()),
                        sae_accuracy=sae.value,
                        sae_ci_low=sae.ci_low,
                        sae_ci_high=sae.ci_high,
                        residual_accuracy=residual_k.value,
                        residual_ci_low=residual_k.ci_low,
                        full_residual_accuracy=full.value,
                        full_residual_ci_low=full.ci_low,
                    )
    return [found[key] for key in sorted(found, key=lambda key: (key[0] != "before", key[1]))]


def latency_metrics(curve: list[LatencyRow], cfg: DisambiguationConfig) -> LatencyMetrics:
    """The first decodable offset after the cue (interval's lower end >= `latency_threshold`) per cue position and
    probe, and mean accuracies (offsets with fewer than `latency_min_items` test items never count)."""

    def counted(name: str) -> list[LatencyRow]:
        return [row for row in curve if row.cue_position == name and row.n_test >= cfg.latency_min_items]

    def first(name: str, ci_low: str) -> float:
        for row in counted(name):
            if row.offset >= 1 and getattr(row, ci_low) >= cfg.latency_threshold:
                return float(row.offset)
        return NAN

    def mean(name: str, low: int, high: int) -> float:
        values = [
            row.sae_accuracy
            for row in counted(name)
            if low <= row.offset <= high and row.sae_accuracy == row.sae_accuracy
        ]
        return sum(values) / len(values) if values else NAN

    top = cfg.latency_max_offset
    return LatencyMetrics(
        k=cfg.latency_k,
        threshold=cfg.latency_threshold,
        before_sae=first("before", "sae_ci_low"),
        before_residual=first("before", "residual_ci_low"),
        before_full_residual=first("before", "full_residual_ci_low"),
        before_sae_mean=mean("before", 1, top),
        after_sae=first("after", "sae_ci_low"),
        after_residual=first("after", "residual_ci_low"),
        after_full_residual=first("after", "full_residual_ci_low"),
        after_sae_mean=mean("after", 1, top),
        after_pre_cue_sae=mean("after", -top - 1, -1),
    )


def _ranking(scores: ReadoutScores) -> list[int]:
    """The SAE latents of the largest probe, by mean difference on the train items (empty when none was fitted)."""
    return scores.sae_probes[max(scores.sae_probes)].ranked if scores.sae_probes else []


def _empty(
    encoded: EncodedItems, cfg: DisambiguationConfig, source: str, dropped: dict[str, int]
) -> DisambiguationResult:
    """Every metric NaN: no item survived the tokenization checks."""
    from tsae_evals.probing.probes import K_VALUES, ReadoutScores

    empty = ProbeAccuracyMetrics.from_scores(ReadoutScores.empty(K_VALUES))
    return DisambiguationResult(
        metrics=DisambiguationMetrics(
            gate=GateMetrics(
                accuracy=NAN,
                mean_logit_diff=NAN,
                n_items=encoded.n,
                n_gated_correct=0,
                n_dropped=sum(dropped.values()),
            ),
            homonym_cue_before=empty,
            homonym_cue_after=empty,
            last=empty,
            embedding=EmbeddingControlMetrics(accuracy=NAN, ci_low=NAN, ci_high=NAN, n_test=0),
            latency=latency_metrics([], cfg),
        ),
        latency_curve=[],
        gate_by_part=[],
        gate_by_homonym=[],
        top_latents={},
        sae_l0=NAN,
        n_probe_items=0,
        dropped=dropped,
        items_hash=encoded.source_hash,
        items_source=source,
    )
