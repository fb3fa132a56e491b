"""Coreference: do the SAE's latents at a pronoun carry which person it refers to, and do they look like that
person's latents?

1. Items (data.py, or the config's `items_file`) are tokenised for the model; items failing the checks (a name
   that is not one token, pairs of different lengths, ...) are dropped and counted.
2. One model forward over the items (shared with every other SAE of the run and the other probe evals) gives the
   hook's activations and the gate: logit(antecedent) - logit(distractor) after "Q: Who ...? A:". The gate of an
   item is its minimal pair's mean difference (the pair swaps the antecedent, so the model's preference for the
   nearer name cancels); an item without a pair keeps its own. Reported per template, and uncorrected.
3. Condition (`meta["condition"]`, `unambiguous` when absent): unambiguous items (gender decides) are probed only
   where the model passes the gate; ambiguous items (the predicate after the pronoun decides) are all probed
   unless `gate_ambiguous`. Per condition, SAE-Bench's sparse probes (top-k latents by mean difference, logistic
   regression) read the antecedent (label 1: first mention) at the pronoun and 1, 2, 3 tokens after it, k in 1,
   2, 5, 10, 20, against the full residual, the top-k residual dimensions, a random SAE and the majority class;
   train and test share no name, occupation or predicate.
4. Ambiguity contrast: unambiguous minus ambiguous top-`readout_k` accuracy at each readout, and the first
   readout at which the ambiguous items become decodable.
5. Binding score: mean of cos(f_pronoun, f_antecedent) - cos(f_pronoun, f_distractor) over the unambiguous
   probe items, with a bootstrap interval, against a sign-flip null (antecedent and distractor swapped at random
   per item), the random SAE and the raw residual. Both labels occur equally, so the nearer word's higher
   similarity cancels out of the mean. On ambiguous items the same score is read 3 tokens after the pronoun
   (at the pronoun a generated pair is one text with two labels: its scores cancel exactly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsae_evals.evals.coreference.config import CoreferenceConfig
from tsae_evals.evals.coreference.data import GENERATOR, generate_items
from tsae_evals.evals.coreference.result import (
    CONDITIONS,
    OFFSETS,
    AmbiguityMetrics,
    BindingMetrics,
    CoreferenceMetrics,
    CoreferenceResult,
    GateDetailMetrics,
    readout_name,
)
from tsae_evals.probing.items import read_items
from tsae_evals.probing.result import GateMetrics, GateRow, ProbeAccuracyMetrics, gate_rows
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext, RunShape
    from tsae_evals.probing.encode import EncodedItems
    from tsae_evals.probing.probes import ReadoutScores

NAN = float("nan")
MARKS = ("pronoun", "antecedent", "distractor")
PRONOUN, ANTECEDENT, DISTRACTOR = 0, len(OFFSETS), len(OFFSETS) + 1
"""Slots of the encoded positions: the pronoun (offset 0), the offsets after it, then the two candidates."""
BINDING_OFFSET_AMBIGUOUS = max(OFFSETS)
"""Ambiguous items' binding score reads this many tokens after the pronoun, once the predicate has been read: at
the pronoun itself the two items of a generated pair are the same text, so their scores cancel exactly."""
TOP_LATENTS = 20


def check(shape: RunShape, cfg: CoreferenceConfig) -> None:
    """A user's items file is read (and refused with the offending line) before any model loads."""
    if cfg.items_file is not None:
        read_items(cfg.items_file)


@register_eval("coreference", version=1, config=CoreferenceConfig, group="probes", check=check)
def coreference(ctx: EvalContext, cfg: CoreferenceConfig) -> CoreferenceResult:
    """Antecedent probes at a pronoun and the tokens after it, ambiguous vs unambiguous, and the binding score."""
    import torch

    from tsae_evals.probing.encode import encode_items
    from tsae_evals.probing.forward import item_forward
    from tsae_evals.probing.probes import encode_at, gather, offset_index, random_sae_codes, score_readout

    items, source = cfg.load_items(lambda: generate_items(ctx.seed, cfg.n_pairs), GENERATOR)
    encoded = encode_items(ctx.model.tokenizer, items, ctx.windows.prepend_bos, ctx.model.cfg.n_ctx)
    if encoded.n == 0:
        return _nan_result(encoded, source, cfg.readout_k)
    forward = item_forward(ctx.model, encoded, [ctx.hook_name], batch_size=cfg.batch_size)
    activations = forward.activations[ctx.hook_name]
    paired = pair_logit_diff(encoded, forward.logit_diff)
    unambiguous = torch.tensor([_condition(item.meta) == "unambiguous" for item in encoded.items])
    passed = (paired > 0) | ~encoded.has_gate
    use = passed | (~unambiguous & (not cfg.gate_ambiguous))
    masks = {"unambiguous": unambiguous & use, "ambiguous": ~unambiguous & use}

    missing = torch.full((encoded.n,), -1, dtype=torch.long)
    marks = {name: encoded.positions.get(name, missing) for name in MARKS}
    index, valid = offset_index(marks["pronoun"], encoded.lengths, max(OFFSETS))
    index = torch.cat([index, marks["antecedent"].clamp_min(0)[:, None], marks["distractor"].clamp_min(0)[:, None]], 1)
    first = 1 if encoded.prepend_bos else 0
    codes = encode_at(
        ctx.sae, activations, encoded.lengths, index, first_text_position=first, batch_size=cfg.batch_size
    )
    random_latents = random_sae_codes(
        activations,
        encoded.lengths,
        index,
        d_sae=int(ctx.sae.cfg.d_sae),
        l0=codes.l0,
        first_text_position=first,
        seed=ctx.seed,
    )
    residual = gather(activations, index).float()
    labels, train = encoded.labels, encoded.is_train

    scores: dict[str, ReadoutScores] = {}
    for condition in CONDITIONS:
        for offset in OFFSETS:
            rows = masks[condition] & valid[:, offset]
            scores[readout_name(condition, offset)] = score_readout(
                codes.latents[:, offset],
                residual[:, offset],
                random_latents[:, offset],
                labels,
                train & rows,
                ~train & rows,
                seed=ctx.seed,
                n_resamples=cfg.n_bootstrap,
                confidence=cfg.confidence,
            )

    binding = {}
    for condition in CONDITIONS:
        reader = PRONOUN if condition == "unambiguous" else BINDING_OFFSET_AMBIGUOUS
        slots = [reader, ANTECEDENT, DISTRACTOR]
        rows = masks[condition] & valid[:, reader] & (marks["antecedent"] >= 0) & (marks["distractor"] >= 0)
        binding[condition] = binding_metrics(
            binding_scores(codes.latents[rows][:, slots]),
            random_sae=binding_scores(random_latents[rows][:, slots]),
            residual=binding_scores(residual[rows][:, slots]),
            seed=ctx.seed,
            n_resamples=cfg.n_bootstrap,
            confidence=cfg.confidence,
        )

    metrics = CoreferenceMetrics(
        gate=GateMetrics.measure(encoded, paired),
        gate_detail=_gate_detail(encoded, paired, forward.logit_diff, unambiguous, masks),
        **{name: ProbeAccuracyMetrics.from_scores(score) for name, score in scores.items()},
        ambiguity=_ambiguity(scores, labels, train, masks, valid, cfg.readout_k),
        binding_unamb=binding["unambiguous"],
        binding_amb=binding["ambiguous"],
    )
    return CoreferenceResult(
        metrics=metrics,
        dropped=encoded.dropped,
        gate_by_part=_gate_by_part(encoded, paired, forward.logit_diff),
        items_hash=encoded.source_hash,
        items_source=source,
        top_latents={name: score.sae_probes[TOP_LATENTS].ranked for name, score in scores.items() if score.sae_probes},
        sae_l0=codes.l0,
    )


def _condition(meta: dict[str, str]) -> str:
    return meta.get("condition", "unambiguous")


def pair_logit_diff(encoded: EncodedItems, logit_diff: torch.Tensor) -> torch.Tensor:
    """`[n]` each item's gate: the mean logit difference over the kept items of its `group` (its minimal pair),
    or its own where it has no group (NaN stays NaN for items without a gate)."""
    import torch

    members: dict[str, list[int]] = {}
    for row, item in enumerate(encoded.items):
        if item.group:
            members.setdefault(item.group, []).append(row)
    paired = logit_diff.clone()
    for rows in members.values():
        paired[rows] = logit_diff[torch.tensor(rows)].mean()
    return paired


def binding_scores(vectors: torch.Tensor) -> torch.Tensor:
    """`[m]` cos(pronoun, antecedent) - cos(pronoun, distractor) for `vectors [m, 3, F]` (in that order); a zero
    vector has cosine 0 with everything."""
    import torch.nn.functional as F

    pronoun, antecedent, distractor = vectors.double().unbind(1)
    return F.cosine_similarity(pronoun, antecedent, dim=-1, eps=1e-12) - F.cosine_similarity(
        pronoun, distractor, dim=-1, eps=1e-12
    )


def binding_metrics(
    scores: torch.Tensor,
    *,
    random_sae: torch.Tensor,
    residual: torch.Tensor,
    seed: int,
    n_resamples: int,
    confidence: float,
) -> BindingMetrics:
    """The mean score with its bootstrap interval, and the sign-flip null: under "the latents do not tell the
    antecedent from the distractor" swapping the two leaves each item's score equally likely to have either sign."""
    import torch

    n = int(scores.numel())
    if n == 0:
        nan = dict.fromkeys(("score", "ci_low", "ci_high", "null_quantile", "p_value", "random_sae_score"), NAN)
        return BindingMetrics(**nan, residual_score=NAN, n_items=0)
    generator = torch.Generator().manual_seed(seed)
    means = scores[torch.randint(n, (n_resamples, n), generator=generator)].mean(1)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    signs = torch.randint(2, (n_resamples, n), generator=generator, dtype=torch.float64) * 2 - 1
    null = (signs * scores).mean(1)
    score = float(scores.mean())
    return BindingMetrics(
        score=score,
        ci_low=low,
        ci_high=high,
        null_quantile=float(torch.quantile(null, confidence)),
        p_value=float((1 + (null >= score).sum()) / (1 + n_resamples)),
        random_sae_score=float(random_sae.mean()),
        residual_score=float(residual.mean()),
        n_items=n,
    )


def _gate_detail(
    encoded: EncodedItems,
    paired: torch.Tensor,
    logit_diff: torch.Tensor,
    unambiguous: torch.Tensor,
    masks: dict[str, torch.Tensor],
) -> GateDetailMetrics:
    gated = encoded.has_gate
    labels = encoded.labels

    def rate(values: torch.Tensor, rows: torch.Tensor) -> float:
        rows = rows & gated
        return float((values[rows] > 0).double().mean()) if rows.any() else NAN

    return GateDetailMetrics(
        unambiguous_accuracy=rate(paired, unambiguous),
        ambiguous_accuracy=rate(paired, ~unambiguous),
        item_accuracy=rate(logit_diff, gated),
        first_mention_item_accuracy=rate(logit_diff, labels == 1),
        second_mention_item_accuracy=rate(logit_diff, labels == 0),
        n_probe_unambiguous=int(masks["unambiguous"].sum()),
        n_probe_ambiguous=int(masks["ambiguous"].sum()),
    )


def _gate_by_part(encoded: EncodedItems, paired: torch.Tensor, logit_diff: torch.Tensor) -> list[GateRow]:
    """The pair gate per template, then the uncorrected per-item gate per template (`template/per_item`)."""
    return [
        *gate_rows(encoded, paired),
        *gate_rows(encoded, logit_diff, part=lambda item: f"{item.template}/per_item"),
    ]


def _ambiguity(
    scores: dict[str, ReadoutScores],
    labels: torch.Tensor,
    train: torch.Tensor,
    masks: dict[str, torch.Tensor],
    valid: torch.Tensor,
    k: int,
) -> AmbiguityMetrics:
    def gap(offset: int, kind: str = "sae") -> float:
        unamb, amb = scores[readout_name("unambiguous", offset)], scores[readout_name("ambiguous", offset)]
        return getattr(unamb, kind)[k].value - getattr(amb, kind)[k].value

    latency = NAN
    for offset in OFFSETS:
        test_labels = labels[masks["ambiguous"] & valid[:, offset] & ~train].double()
        if not test_labels.numel():
            continue
        chance = float(max(test_labels.mean(), 1 - test_labels.mean()))
        if scores[readout_name("ambiguous", offset)].sae[k].ci_low > chance:
            latency = float(offset)
            break
    return AmbiguityMetrics(
        k=k,
        gap_pronoun=gap(0),
        gap_plus_1=gap(1),
        gap_plus_2=gap(2),
        gap_plus_3=gap(3),
        residual_gap_pronoun=gap(0, "residual_top_k"),
        ambiguous_latency=latency,
    )


def _nan_result(encoded: EncodedItems, source: str, k: int) -> CoreferenceResult:
    """Every metric NaN: no item survived the tokenization checks (e.g. a tokenizer that splits every name)."""
    import torch

    from tsae_evals.probing.probes import K_VALUES, ReadoutScores

    empty = torch.zeros(0)
    no_scores = ProbeAccuracyMetrics.from_scores(ReadoutScores.empty(K_VALUES))
    detail_floats = {name for name, field in GateDetailMetrics.model_fields.items() if field.annotation is float}
    nan_binding = binding_metrics(empty, random_sae=empty, residual=empty, seed=0, n_resamples=1, confidence=0.5)
    metrics = CoreferenceMetrics(
        gate=GateMetrics.measure(encoded, empty),
        gate_detail=GateDetailMetrics(**dict.fromkeys(detail_floats, NAN), n_probe_unambiguous=0, n_probe_ambiguous=0),
        **{readout_name(condition, offset): no_scores for condition in CONDITIONS for offset in OFFSETS},
        ambiguity=AmbiguityMetrics(
            k=k,
            **dict.fromkeys(("gap_pronoun", "gap_plus_1", "gap_plus_2", "gap_plus_3"), NAN),
            residual_gap_pronoun=NAN,
            ambiguous_latency=NAN,
        ),  # fmt: skip
        binding_unamb=nan_binding,
        binding_amb=nan_binding,
    )
    return CoreferenceResult(
        metrics=metrics,
        dropped=encoded.dropped,
        gate_by_part=[],
        items_hash=encoded.source_hash,
        items_source=source,
        top_latents={},
        sae_l0=NAN,
    )
