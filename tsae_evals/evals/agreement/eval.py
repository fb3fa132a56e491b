"""Subject-verb agreement: where do the SAE's latents carry the subject's number, and does the model use them?

1. Items (data.py, or the config's `items_file`) are tokenised for the model; items failing the checks (a verb
   that is not one token, pairs of different lengths, ...) are dropped and counted.
2. One model forward over the items (shared with every other SAE of the run and the other probe evals) gives the
   hook's activations and the gate: logit(correct verb) - logit(wrong verb) after the prefix, per template.
3. On the items the model gets right, SAE-Bench's sparse probes (top-k latents by mean difference, logistic
   regression) read the subject's number at the subject, at the attractor and at the pre-verb token (the last),
   for k in 1, 2, 5, 10, 20, against the full residual, the top-k residual dimensions, a random SAE and the
   majority class; train and test share no noun.
4. Carry curve: the subject probe, unchanged, read 1..carry_max_offset tokens later. Susceptibility: congruent
   minus incongruent accuracy, for the model and for the pre-verb probe.
5. Causal check: the top-k pre-verb number latents set to 0 at the pre-verb token, spliced back with the SAE's
   error term (x + decode(f') - decode(f)); the drop of the logit difference against k random active latents.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tsae_evals.evals.agreement.config import AgreementConfig
from tsae_evals.evals.agreement.data import GENERATOR, generate_items
from tsae_evals.evals.agreement.result import (
    AgreementMetrics,
    AgreementResult,
    CausalMetrics,
    CausalRow,
    PartRow,
    SusceptibilityMetrics,
)
from tsae_evals.probing.items import read_items
from tsae_evals.probing.result import (
    CarryMetrics,
    GateMetrics,
    ProbeAccuracyMetrics,
    carry_rows,
    gate_rows,
)
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext, RunShape
    from tsae_evals.probing.encode import EncodedItems
    from tsae_evals.probing.items import ProbeItem
    from tsae_evals.probing.probes import LinearProbe, Readouts, ReadoutScores

NAN = float("nan")
READOUTS = {"subject": "subject", "attractor": "attractor", "pre_verb": "last"}
"""Readout category -> the position it reads (`last`: the token before the verb)."""


def check(shape: RunShape, cfg: AgreementConfig) -> None:
    """A user's items file is read (and refused with the offending line) before any model loads."""
    if cfg.items_file is not None:
        read_items(cfg.items_file)


@register_eval("agreement", version=1, config=AgreementConfig, group="probes", check=check)
def agreement(ctx: EvalContext, cfg: AgreementConfig) -> AgreementResult:
    """Subject-verb agreement: subject-number probes at subject, attractor and pre-verb; carry; causal check."""
    import torch

    from tsae_evals.probing.encode import encode_items
    from tsae_evals.probing.forward import item_forward
    from tsae_evals.probing.probes import (
        K_VALUES,
        ReadoutScores,
        carry_curve,
        encode_at,
        gather,
        offset_index,
        probe_readouts,
    )

    items, source = cfg.load_items(lambda: generate_items(ctx.seed, cfg.n_pairs), GENERATOR)
    encoded = encode_items(ctx.model.tokenizer, items, ctx.windows.prepend_bos, ctx.model.cfg.n_ctx)
    if encoded.n == 0 or not bool(encoded.has_gate.any()):
        return _empty(encoded, cfg, source)

    forward = item_forward(ctx.model, encoded, [ctx.hook_name], batch_size=cfg.batch_size)
    activations = forward.activations[ctx.hook_name]
    use = forward.gate_correct
    labels, train = encoded.labels, encoded.is_train
    seed, n_resamples, confidence = ctx.seed, cfg.n_bootstrap, cfg.confidence
    marks = [mark for mark in READOUTS.values() if mark in encoded.positions]  # a user's file may lack some
    readouts = probe_readouts(
        ctx.sae,
        activations,
        encoded,
        marks,
        use,
        seed=seed,
        batch_size=cfg.batch_size,
        n_resamples=n_resamples,
        confidence=confidence,
    )
    scores = {name: readouts.scores.get(mark, ReadoutScores.empty(K_VALUES)) for name, mark in READOUTS.items()}

    no_mark = torch.full((encoded.n,), -1, dtype=torch.long)
    index, valid = offset_index(encoded.positions.get("subject", no_mark), encoded.lengths, cfg.carry_max_offset)
    carried = encode_at(
        ctx.sae, activations, encoded.lengths, index, first_text_position=int(encoded.prepend_bos)
    ).latents
    valid = valid & use[:, None]
    curves = [
        carry_curve(
            features,
            valid,
            labels,
            train,
            ~train,
            k=cfg.readout_k,
            seed=seed,
            n_resamples=n_resamples,
            confidence=confidence,
        )
        for features in (carried, gather(activations, index))
    ]

    ks = sorted({*cfg.causal_k, cfg.readout_k})
    causal_rows, n_causal, clean = _causal(
        ctx, cfg, encoded, activations, forward.logit_diff, use, scores["pre_verb"], ks
    )
    headline = next(row for row in causal_rows if row.k == cfg.readout_k)
    pre_verb_latents = readouts.latents[:, marks.index("last")]
    return AgreementResult(
        metrics=AgreementMetrics(
            gate=GateMetrics.measure(encoded, forward.logit_diff),
            subject=ProbeAccuracyMetrics.from_scores(scores["subject"]),
            attractor=ProbeAccuracyMetrics.from_scores(scores["attractor"]),
            pre_verb=ProbeAccuracyMetrics.from_scores(scores["pre_verb"]),
            carry=CarryMetrics.from_curves(cfg.readout_k, curves[0], curves[1]),
            susceptibility=_susceptibility(encoded, forward.logit_diff, use, readouts, cfg.readout_k),
            causal=CausalMetrics(
                k=cfg.readout_k,
                n_items=n_causal,
                clean_logit_diff=clean,
                logit_diff_drop=headline.logit_diff_drop,
                flip_fraction=headline.flip_fraction,
                random_logit_diff_drop=headline.random_logit_diff_drop,
                random_flip_fraction=headline.random_flip_fraction,
                drop_over_random=headline.logit_diff_drop - headline.random_logit_diff_drop,
            ),
        ),
        gate_by_part=gate_rows(encoded, forward.logit_diff, _part),
        carry_curve=carry_rows(curves[0], curves[1]),
        causal_rows=causal_rows,
        parts=_parts(
            encoded, forward.logit_diff, use, pre_verb_latents, scores["pre_verb"].sae_probes.get(cfg.readout_k)
        ),
        top_latents={name: _ranking(score) for name, score in scores.items()},
        sae_l0=readouts.l0,
        dropped=encoded.dropped,
        items_hash=encoded.source_hash,
        items_source=source,
    )


def _ranking(scores: ReadoutScores) -> list[int]:
    """The SAE latents of the largest probe, by mean difference on the train items (empty when none was fitted)."""
    return scores.sae_probes[max(scores.sae_probes)].ranked if scores.sae_probes else []


def _part(item: ProbeItem) -> str:
    return f"{item.template}/{item.meta.get('condition', 'none')}"


def _susceptibility(
    encoded: EncodedItems,
    logit_diff: torch.Tensor,
    use: torch.Tensor,
    readouts: Readouts,
    k: int,
) -> SusceptibilityMetrics:
    """Congruent minus incongruent: the gate over every gated item of those conditions; the pre-verb probes (SAE
    and residual, top `readout_k`) over the gated-correct test items."""
    from tsae_evals.probing.probes import fit_probe, probing_context

    slot = readouts.marks.index("last")
    sae_probe = readouts.scores["last"].sae_probes.get(k)
    fit_rows = encoded.is_train & use
    residual_probe = None
    if encoded.labels[fit_rows].unique().numel() == 2:
        with probing_context():
            residual_probe = fit_probe(readouts.residual[fit_rows, slot], encoded.labels[fit_rows], k)
    test = ~encoded.is_train & use
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    for condition in ("congruent", "incongruent"):
        rows = encoded.where(condition=condition)
        values[f"gate_{condition}"] = _fraction_positive(logit_diff[rows & encoded.has_gate])
        probe_rows = rows & test
        counts[condition] = int(probe_rows.sum())
        for name, probe, features in (
            ("probe", sae_probe, readouts.latents[:, slot]),
            ("residual", residual_probe, readouts.residual[:, slot]),
        ):
            values[f"{name}_{condition}"] = _probe_accuracy(probe, features[probe_rows], encoded.labels[probe_rows])
    return SusceptibilityMetrics(
        gate_congruent=values["gate_congruent"],
        gate_incongruent=values["gate_incongruent"],
        gate_susceptibility=values["gate_congruent"] - values["gate_incongruent"],
        probe_congruent=values["probe_congruent"],
        probe_incongruent=values["probe_incongruent"],
        probe_susceptibility=values["probe_congruent"] - values["probe_incongruent"],
        residual_probe_susceptibility=values["residual_congruent"] - values["residual_incongruent"],
        n_congruent=counts["congruent"],
        n_incongruent=counts["incongruent"],
    )


def _fraction_positive(values: torch.Tensor) -> float:
    return float((values > 0).double().mean()) if values.numel() else NAN


def _probe_accuracy(probe: LinearProbe | None, features: torch.Tensor, labels: torch.Tensor) -> float:
    if probe is None or probe.model is None or labels.numel() == 0:
        return NAN
    return float((probe.predict(features) == labels).double().mean())


def _parts(
    encoded: EncodedItems,
    logit_diff: torch.Tensor,
    use: torch.Tensor,
    pre_verb_latents: torch.Tensor,
    probe: LinearProbe | None,
) -> list[PartRow]:
    """The gate and the pre-verb SAE probe per template and condition."""
    import torch

    names = [_part(item) for item in encoded.items]
    test = ~encoded.is_train & use
    rows = []
    for part in dict.fromkeys(names):
        mask = torch.tensor([name == part for name in names], dtype=torch.bool)
        template, condition = part.split("/", 1)
        probe_rows = mask & test
        rows.append(
            PartRow(
                template=template,
                condition=condition,
                gate_n=int((mask & encoded.has_gate).sum()),
                gate_accuracy=_fraction_positive(logit_diff[mask & encoded.has_gate]),
                probe_n=int(probe_rows.sum()),
                probe_accuracy=_probe_accuracy(probe, pre_verb_latents[probe_rows], encoded.labels[probe_rows]),
            )
        )
    return rows


def _causal(
    ctx: EvalContext,
    cfg: AgreementConfig,
    encoded: EncodedItems,
    activations: torch.Tensor,
    logit_diff: torch.Tensor,
    use: torch.Tensor,
    pre_verb: ReadoutScores,
    ks: list[int],
) -> tuple[list[CausalRow], int, float]:
    """Ablate the top-k pre-verb number latents (and, as the control, k random latents active at the pre-verb
    token of these items) at the last token of a seeded sample of the gated-correct test items. Returns the rows
    per k, the items used and their mean clean logit difference."""
    import torch

    from tsae_evals.probing.forward import edited_logit_diff
    from tsae_evals.probing.probes import encode_at

    candidates = [int(i) for i in torch.nonzero(~encoded.is_train & use & encoded.has_gate).flatten()]
    ranking = _ranking(pre_verb)
    if not candidates or not ranking:
        return [_nan_causal_row(k) for k in ks], 0, NAN
    picked_rows = sorted(
        random.Random(f"{ctx.seed}-agreement-causal").sample(candidates, min(cfg.causal_items, len(candidates)))
    )
    rows = torch.tensor(picked_rows, dtype=torch.long)
    clean = logit_diff[rows].double()
    last = encoded.positions["last"]
    sae = ctx.sae

    def ablated(latents_to_zero: list[int]) -> torch.Tensor:
        def edit(batch_rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            latents = sae.encode(x)
            edited = latents.clone()
            batch = torch.arange(x.shape[0], device=x.device)[:, None]
            positions = last[batch_rows].to(x.device)[:, None]
            edited[batch, positions, torch.tensor(latents_to_zero, device=x.device)[None, :]] = 0
            return x + sae.decode(edited) - sae.decode(latents)  # the SAE's error term kept

        return edited_logit_diff(ctx.model, encoded, ctx.hook_name, edit, rows, batch_size=cfg.batch_size).double()

    at_last = encode_at(
        sae, activations[rows], encoded.lengths[rows], last[rows][:, None], first_text_position=int(encoded.prepend_bos)
    ).latents[:, 0]
    active = [int(i) for i in torch.nonzero((at_last > 0).any(0)).flatten()]
    result = []
    for k in ks:
        top = ranking[:k]
        edited = ablated(top)
        pool = [latent for latent in active if latent not in set(top)]
        drops, flips = [], []
        for draw in range(cfg.random_draws):
            chosen = random.Random(f"{ctx.seed}-agreement-random-{k}-{draw}").sample(pool, min(k, len(pool)))
            control = ablated(chosen) if chosen else clean
            drops.append(float((clean - control).mean()))
            flips.append(float((control < 0).double().mean()))
        result.append(
            CausalRow(
                k=k,
                latents=top,
                logit_diff_drop=float((clean - edited).mean()),
                flip_fraction=float((edited < 0).double().mean()),
                random_logit_diff_drop=sum(drops) / len(drops),
                random_flip_fraction=sum(flips) / len(flips),
            )
        )
    return result, len(picked_rows), float(clean.mean())


def _nan_causal_row(k: int) -> CausalRow:
    return CausalRow(
        k=k, latents=[], logit_diff_drop=NAN, flip_fraction=NAN, random_logit_diff_drop=NAN, random_flip_fraction=NAN
    )


def _empty(encoded: EncodedItems, cfg: AgreementConfig, source: str) -> AgreementResult:
    """Every metric NaN: no gated item survived the tokenization checks (e.g. a tokenizer that splits every verb)."""
    from tsae_evals.probing.probes import K_VALUES, ReadoutScores

    empty = ProbeAccuracyMetrics.from_scores(ReadoutScores.empty(K_VALUES))
    nan_fields = {name for name, field in SusceptibilityMetrics.model_fields.items() if field.annotation is float}
    return AgreementResult(
        metrics=AgreementMetrics(
            gate=GateMetrics(
                accuracy=NAN, mean_logit_diff=NAN, n_items=encoded.n, n_gated_correct=0, n_dropped=encoded.n_dropped
            ),
            subject=empty,
            attractor=empty,
            pre_verb=empty,
            carry=CarryMetrics(
                k=cfg.readout_k,
                accuracy_offset_1=NAN,
                mean_accuracy=NAN,
                carry_tokens=0,
                residual_mean_accuracy=NAN,
                residual_carry_tokens=0,
            ),
            susceptibility=SusceptibilityMetrics(**dict.fromkeys(nan_fields, NAN), n_congruent=0, n_incongruent=0),
            causal=CausalMetrics(
                k=cfg.readout_k,
                n_items=0,
                clean_logit_diff=NAN,
                logit_diff_drop=NAN,
                flip_fraction=NAN,
                random_logit_diff_drop=NAN,
                random_flip_fraction=NAN,
                drop_over_random=NAN,
            ),
        ),
        gate_by_part=[],
        carry_curve=[],
        causal_rows=[],
        parts=[],
        top_latents={},
        sae_l0=NAN,
        dropped=encoded.dropped,
        items_hash=encoded.source_hash,
        items_source=source,
    )
