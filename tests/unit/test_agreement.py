"""agreement: the generator's items are balanced, distinct, split by noun lemma and marked on the nouns; the eval
runs from a user's items file on the tiny model (its gate and causal check against hand-computed values), shares
one model forward between two SAEs of a run, and gives an all-NaN result when every item is dropped."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests import helpers
from tsae_evals.context import EvalContext
from tsae_evals.errors import UsageError
from tsae_evals.evals.agreement.config import AgreementConfig
from tsae_evals.evals.agreement.data import IRREGULAR_NOUNS, TEMPLATES, VERB_PAIRS, generate_items
from tsae_evals.evals.agreement.eval import agreement, check
from tsae_evals.probing import forward
from tsae_evals.probing.encode import encode_items
from tsae_evals.probing.items import ProbeItem, write_items
from tsae_evals.results import read_record
from tsae_evals.runner import RunRequest, run

SMALL = {"n_bootstrap": 100, "causal_items": 8, "random_draws": 1, "causal_k": [1, 5]}


# --- the generator ------------------------------------------------------------------------------------------------


def test_generated_items_are_balanced_distinct_and_split_by_noun_lemma():
    items = generate_items(seed=0, n_pairs=24)
    assert len(items) == len(TEMPLATES) * 24 * 2
    assert len({item.prefix for item in items}) == len(items)
    # every template: both labels equally often in each split; attractor templates: each condition too
    cells = Counter((item.template, item.split, item.label, item.meta["condition"]) for item in items)
    for template in TEMPLATES:
        conditions = ["none"] if template == "simple" else ["congruent", "incongruent"]
        counts = {
            cells[template, split, label, c] for split in ("train", "test") for label in (0, 1) for c in conditions
        }
        assert len(counts) == 1, (template, counts)
    lemmas = {split: set() for split in ("train", "test")}
    for item in items:
        lemmas[item.split] |= {item.meta["subject"], item.meta.get("attractor", item.meta["subject"])}
    assert not lemmas["train"] & lemmas["test"]
    irregular = {singular for singular, _ in IRREGULAR_NOUNS}
    assert lemmas["train"] & irregular and lemmas["test"] & irregular
    # the pairs differ in the subject's number only
    groups: dict[str, list[ProbeItem]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    assert all(sorted(member.label for member in pair) == [0, 1] for pair in groups.values())
    assert all(len({member.meta.get("attractor_number") for member in pair}) == 1 for pair in groups.values())
    assert generate_items(seed=0, n_pairs=24) == items and generate_items(seed=1, n_pairs=24) != items


def test_marks_sit_on_the_nouns_and_the_gate_and_condition_follow_the_numbers():
    for item in generate_items(seed=3, n_pairs=12):
        plural = item.label == 1
        subject_end = item.marks["subject"] + 1
        subject = item.prefix[:subject_end].split()[-1]
        assert item.prefix[subject_end : subject_end + 1] in ("", " ")
        assert item.meta["subject_number"] == ("plural" if plural else "singular")
        # the correct verb is the pair's plural form exactly for plural subjects
        pair = next(verbs for verbs in VERB_PAIRS if set(verbs) == {item.correct, item.wrong})
        assert (item.correct, item.wrong) == (pair[item.label], pair[1 - item.label])
        if item.template == "simple":
            assert "attractor" not in item.marks and item.meta["condition"] == "none"
            continue
        attractor = item.prefix[: item.marks["attractor"] + 1].split()[-1]
        assert item.marks["attractor"] > item.marks["subject"] and attractor != subject
        same = (item.meta["attractor_number"] == "plural") == plural
        assert item.meta["condition"] == ("congruent" if same else "incongruent")


# --- the eval on the tiny model ------------------------------------------------------------------------------------

PLURAL_WORDS = ["dogs", "birds", "trains", "boats", "letters", "numbers", "rivers", "cities"]
SINGULAR_WORDS = ["cat", "mat", "fields", "skies", "children", "mountains", "forests", "markets"]


def _tiny_items() -> list[ProbeItem]:
    """Agreement-shaped items in the tiny tokenizer's words (every one a single token): 'the NOUN' and 'the NOUN
    under the ATTRACTOR', gate ' sat' vs ' ran'; the two word lists stand in for the numbers."""
    items = []
    for index in range(len(PLURAL_WORDS)):
        split = "train" if index < 4 else "test"
        side = range(4) if split == "train" else range(4, 8)
        for attractor_index in side:
            for plural, words in ((0, SINGULAR_WORDS), (1, PLURAL_WORDS)):
                noun = words[index]
                verbs = (" ran", " sat") if plural else (" sat", " ran")
                for attractor_plural in (0, 1):
                    attractor = (PLURAL_WORDS if attractor_plural else SINGULAR_WORDS)[attractor_index]
                    if attractor == noun:
                        continue
                    prefix = f"the {noun} under the {attractor}"
                    condition = "congruent" if attractor_plural == plural else "incongruent"
                    items.append(
                        ProbeItem(
                            prefix=prefix,
                            label=plural,
                            template="pp",
                            split=split,
                            marks={"subject": 4 + len(noun) - 1, "attractor": len(prefix) - 1},
                            correct=verbs[0],
                            wrong=verbs[1],
                            meta={"condition": condition},
                        )
                    )
            items.append(
                ProbeItem(
                    prefix=f"the {SINGULAR_WORDS[index]} and the {PLURAL_WORDS[attractor_index]}",
                    label=0,
                    template="simple",
                    split=split,
                    marks={"subject": 4 + len(SINGULAR_WORDS[index]) - 1},
                    correct=" dogs",
                    wrong=" cats",  # splits in the tiny tokenizer: dropped
                )
            )
    return items


def _context(model, sae) -> EvalContext:
    return helpers.eval_context(model, sae, 8)


@pytest.fixture(scope="module")
def items_file(tmp_path_factory) -> Path:
    return write_items(tmp_path_factory.mktemp("agreement") / "items.jsonl", _tiny_items())


def test_eval_from_an_items_file_reports_the_gate_the_probes_and_the_drops(tiny_model, items_file):
    cfg = AgreementConfig(items_file=items_file, **SMALL)
    result = agreement(_context(tiny_model, helpers.tiny_sae()), cfg)
    items = _tiny_items()
    n_simple = sum(item.template == "simple" for item in items)
    assert result.dropped["continuation_not_one_token"] == n_simple
    assert result.metrics.gate.n_items == len(items) - n_simple
    assert result.items_source == str(items_file)

    # the gate, recomputed from the model's full logits on each item alone
    kept = [item for item in items if item.template == "pp"]
    tokenizer = tiny_model.tokenizer
    right = 0
    for item in kept:
        tokens = torch.tensor(
            [[tokenizer.bos_token_id, *tokenizer(item.prefix, add_special_tokens=False)["input_ids"]]]
        )
        with torch.no_grad():
            logits = tiny_model(tokens, prepend_bos=False)[0, -1]
        ids = [tokenizer.convert_tokens_to_ids(word.strip()) for word in (item.correct, item.wrong)]
        right += int(logits[ids[0]] > logits[ids[1]])
    assert result.metrics.gate.accuracy == pytest.approx(right / len(kept))
    assert result.metrics.gate.n_gated_correct == right

    pre_verb = result.metrics.pre_verb
    assert pre_verb.n_train + pre_verb.n_test == right  # probes read only the items the model gets right
    for value in (pre_verb.sae_top_1, pre_verb.residual_top_5, pre_verb.random_sae_top_20, pre_verb.full_residual):
        assert 0 <= value <= 1
    assert pre_verb.sae_top_1_ci_low <= pre_verb.sae_top_1 <= pre_verb.sae_top_1_ci_high
    assert [row.offset for row in result.carry_curve] == list(range(cfg.carry_max_offset + 1))
    # 'the NOUN under the ATTR': the subject is 3 tokens before the last, so offset 4 has no item left
    assert result.carry_curve[3].n == pre_verb.n_test and result.carry_curve[4].n == 0
    assert {row.part for row in result.gate_by_part} == {"pp/congruent", "pp/incongruent"}
    assert [row.k for row in result.causal_rows] == [1, 5]
    assert result.metrics.causal.n_items == min(cfg.causal_items, pre_verb.n_test)

    info = result.metric_info()
    labels = [declared.label for declared in info.values()]
    assert len(labels) == len(set(labels))
    assert info["pre_verb.sae_top_1"].label == "pre_verb_sae_k1" and info["pre_verb.sae_top_1"].headline
    assert info["subject.sae_top_1"].label == "subject_sae_k1" and not info["subject.sae_top_1"].headline


def test_causal_drop_equals_the_hand_spliced_ablation(tiny_model, items_file):
    """k=1 on a StandardSAE: decode is linear, so the edit is x_last - f_j(x_last) * W_dec[j] at the last token."""
    sae = helpers.tiny_sae()
    cfg = AgreementConfig(items_file=items_file, **{**SMALL, "causal_k": [1], "readout_k": 1, "causal_items": 4})
    result = agreement(_context(tiny_model, sae), cfg)
    row = result.causal_rows[0]
    latent = row.latents[0]
    encoded = encode_items(tiny_model.tokenizer, _tiny_items(), True, tiny_model.cfg.n_ctx)
    gate = forward.item_forward(tiny_model, encoded, [helpers.HOOK]).logit_diff
    candidates = torch.nonzero(~encoded.is_train & (gate > 0)).flatten().tolist()
    rows = sorted(random.Random("0-agreement-causal").sample(candidates, min(4, len(candidates))))
    drops = []
    for index in rows:
        length = int(encoded.lengths[index])
        tokens = encoded.tokens[index : index + 1, :length]

        def splice(activation, hook):
            x = activation[0, -1]
            value = torch.relu((x - sae.b_dec) @ sae.W_enc[:, latent] + sae.b_enc[latent])
            activation[0, -1] = x - value * sae.W_dec[latent]
            return activation

        with torch.no_grad():
            logits = tiny_model.run_with_hooks(tokens, prepend_bos=False, fwd_hooks=[(helpers.HOOK, splice)])[0, -1]
        edited = logits[encoded.correct_ids[index]] - logits[encoded.wrong_ids[index]]
        drops.append(float(gate[index]) - float(edited))
    assert row.logit_diff_drop == pytest.approx(sum(drops) / len(drops), abs=1e-5)


def test_two_saes_in_one_run_share_one_model_forward(tiny_model, items_file, corpus_file, tmp_path):
    saes = [helpers.save_sae(helpers.tiny_sae(seed=seed), tmp_path / f"sae{seed}") for seed in (0, 1)]
    forward.clear_cache()
    before = forward.forwards_run()
    request = RunRequest(
        sae_specs=[str(path) for path in saes],
        eval_names="agreement",
        dataset=str(corpus_file),
        n_windows=8,
        context_size=32,
        results_dir=tmp_path / "results",
        config_overrides=[
            f"agreement.items_file={items_file}",
            "agreement.n_bootstrap=100",
            "agreement.causal_items=4",
        ],
    )
    outcomes = [
        outcome for outcome in run(request, model_loader=lambda *_: tiny_model) if outcome.eval_name == "agreement"
    ]
    assert [outcome.status for outcome in outcomes] == ["ok", "ok"]
    assert forward.forwards_run() == before + 1
    records = [read_record(outcome.path) for outcome in outcomes]
    assert records[0].metrics()["gate.accuracy"] == records[1].metrics()["gate.accuracy"]
    assert records[0].metrics()["pre_verb.sae_top_1"] is not None
    assert records[0].eval_result_unstructured["items_source"] == str(items_file)


def test_every_item_dropped_gives_a_nan_result_with_the_counts(tiny_model):
    """The generated English items on the tiny tokenizer: every verb splits, nothing is left to measure."""
    cfg = AgreementConfig(n_pairs=4, **SMALL)
    result = agreement(_context(tiny_model, helpers.tiny_sae()), cfg)
    assert result.metrics.gate.n_items == 0 and result.dropped["continuation_not_one_token"] == len(TEMPLATES) * 8
    assert math.isnan(result.metrics.gate.accuracy) and math.isnan(result.metrics.pre_verb.sae_top_1)
    assert result.items_source.startswith("agreement-templates")
    assert set(result.summary()) == {info.label for info in result.metric_info().values() if info.headline}


def test_bad_settings_and_files_are_refused_before_the_model_loads(tmp_path):
    with pytest.raises(ValueError, match="readout_k"):
        AgreementConfig(readout_k=3)
    with pytest.raises(ValueError, match="causal_k"):
        AgreementConfig(causal_k=[4])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prefix": "the cat", "label": 2, "template": "t", "split": "train"}\n')
    with pytest.raises(UsageError, match="bad.jsonl:1"):
        check(None, AgreementConfig(items_file=bad))  # type: ignore[arg-type]
