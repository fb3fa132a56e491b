"""The coreference eval on the tiny model: the pair gate and the binding score worked out by hand, the plumbing of
its readouts and conditions, the NaN result when every item is dropped, and an items file refused early."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from tests import helpers
from tsae_evals.context import EvalContext
from tsae_evals.errors import UsageError
from tsae_evals.evals.coreference.config import CoreferenceConfig
from tsae_evals.evals.coreference.eval import binding_scores, check, coreference, pair_logit_diff
from tsae_evals.evals.coreference.result import CONDITIONS, OFFSETS, readout_name
from tsae_evals.probing import forward
from tsae_evals.probing.items import ProbeItem, write_items

NOUNS = {
    "train": ["cat", "dogs", "birds", "trains", "boats", "rivers"],
    "test": ["mountains", "forests", "cities", "markets", "letters", "numbers"],
}
"""The two people of a tiny item, disjoint between splits; every word of these items is one tiny-model token."""
PRONOUNS = ("children", "songs")
SMALL = {"n_bootstrap": 200, "batch_size": 16}


def _item(
    first: str, second: str, pronoun: str, label: int, split: str, template: str, group: str, verb: str = "ran"
) -> ProbeItem:
    """`the FIRST sat on the SECOND that PRONOUN VERB and the`: the people are words 1 and 5, the pronoun word 7
    (3 more words follow it)."""
    words = ["the", first, "sat", "on", "the", second, "that", pronoun, verb, "and", "the"]
    ends = [len(" ".join(words[: i + 1])) - 1 for i in range(len(words))]
    antecedent, distractor = (1, 5) if label == 1 else (5, 1)
    return ProbeItem(
        prefix=" ".join(words),
        label=label,
        template=template,
        split=split,  # type: ignore[arg-type]
        marks={"pronoun": ends[7], "antecedent": ends[antecedent], "distractor": ends[distractor]},
        correct=f" {words[antecedent]}",
        wrong=f" {words[distractor]}",
        group=group,
        meta={"condition": "unambiguous" if template == "tiny_unamb" else "ambiguous"},
    )


def tiny_items() -> list[ProbeItem]:
    """Minimal pairs: unambiguous ones swap the pronoun (label 1, then 0); ambiguous ones share the text up to the
    pronoun and differ in the verb after it (as the generator's predicates do)."""
    items = []
    for split, nouns in NOUNS.items():
        for a in nouns:
            for b in nouns:
                if a == b:
                    continue
                group = f"{split}-{a}-{b}"
                items += [
                    _item(a, b, PRONOUNS[0], 1, split, "tiny_unamb", f"u-{group}"),
                    _item(a, b, PRONOUNS[1], 0, split, "tiny_unamb", f"u-{group}"),
                ]
                if (nouns.index(a) + nouns.index(b)) % 3 == 0:
                    items += [
                        _item(a, b, PRONOUNS[0], 1, split, "tiny_amb", f"a-{group}", verb="ran"),
                        _item(a, b, PRONOUNS[0], 0, split, "tiny_amb", f"a-{group}", verb="sang"),
                    ]
    return items


def _context(model, sae) -> EvalContext:
    return helpers.eval_context(model, sae, 32)


def _relu_identity_sae():
    """latents = relu(x): the binding score can be recomputed from the model's own activations."""
    sae = helpers.tiny_sae(d_sae=helpers.D_MODEL)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(helpers.D_MODEL))
        sae.W_dec.copy_(torch.eye(helpers.D_MODEL))
        sae.b_enc.zero_()
    return sae


@pytest.fixture(scope="module")
def items_file(tmp_path_factory):
    return write_items(tmp_path_factory.mktemp("coref") / "items.jsonl", tiny_items())


def test_pair_gate_is_the_pairs_mean_and_leaves_lone_items_alone():
    def item(group: str) -> SimpleNamespace:
        return SimpleNamespace(group=group)

    encoded = SimpleNamespace(items=[item("a"), item("b"), item("a"), item(""), item("b"), item("c")])
    diff = torch.tensor([1.0, 0.5, -3.0, 2.0, 0.25, float("nan")])
    paired = pair_logit_diff(encoded, diff)  # type: ignore[arg-type]
    assert paired[:5].tolist() == [-1.0, 0.375, -1.0, 2.0, 0.375]
    assert math.isnan(paired[5])


def test_binding_score_of_hand_made_vectors():
    vectors = torch.tensor(
        [
            [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],  # cos 1/sqrt(2) with the antecedent, 0 with the distractor
            [[0.0, 2.0], [3.0, 0.0], [1.0, 1.0]],  # 0 - 1/sqrt(2)
            [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]],  # a pronoun with no active latent: 0 - 0
            [[1.0, 1.0], [2.0, 2.0], [1.0, 1.0]],  # 1 - 1
        ]
    )
    assert binding_scores(vectors).tolist() == pytest.approx([0.5**0.5, -(0.5**0.5), 0.0, 0.0])


def test_binding_score_and_gate_on_the_tiny_model_match_a_hand_computation(tiny_model, items_file):
    forward.clear_cache()
    sae = _relu_identity_sae()
    result = coreference(_context(tiny_model, sae), CoreferenceConfig(items_file=items_file, **SMALL))
    items = tiny_items()
    tokenizer = tiny_model.tokenizer
    per_item, acts = [], []
    for item in items:  # each item alone, unpadded, every word one token (BOS first)
        ids = tokenizer(item.prefix, add_special_tokens=False)["input_ids"]
        tokens = torch.tensor([[tokenizer.bos_token_id, *ids]])
        assert tokens.shape[1] == 12
        with torch.no_grad():
            logits, cache = tiny_model.run_with_cache(tokens, prepend_bos=False)
        ids = [tokenizer.convert_tokens_to_ids(word.strip()) for word in (item.correct, item.wrong)]
        per_item.append(float(logits[0, -1, ids[0]] - logits[0, -1, ids[1]]))
        acts.append(cache[helpers.HOOK][0])
    groups: dict[str, list[int]] = {}
    for row, item in enumerate(items):
        groups.setdefault(item.group, []).append(row)
    paired = [sum(per_item[r] for r in groups[item.group]) / 2 for item in items]
    unamb = [row for row, item in enumerate(items) if item.template == "tiny_unamb"]
    metrics = result.metrics
    assert metrics.gate.n_items == len(items) and metrics.gate.n_dropped == 0
    assert metrics.gate.accuracy == pytest.approx(sum(p > 0 for p in paired) / len(items))
    assert metrics.gate_detail.item_accuracy == pytest.approx(sum(d > 0 for d in per_item) / len(items))
    kept = [row for row in unamb if paired[row] > 0]
    assert metrics.gate_detail.n_probe_unambiguous == len(kept) > 0
    assert metrics.gate_detail.n_probe_ambiguous == len(items) - len(unamb)  # not gated by default

    def cos(x, y):
        x, y = x.relu().double(), y.relu().double()
        return float(x @ y / (x.norm() * y.norm()))

    # token positions (BOS = 0): the first person 2, the second 6, the pronoun 8
    expected = []
    for row in kept:
        antecedent, distractor = (2, 6) if items[row].label == 1 else (6, 2)
        expected.append(cos(acts[row][8], acts[row][antecedent]) - cos(acts[row][8], acts[row][distractor]))
    binding = metrics.binding_unamb
    assert binding.n_items == len(kept)
    assert binding.score == pytest.approx(sum(expected) / len(expected), abs=1e-5)
    assert binding.ci_low <= binding.score <= binding.ci_high
    assert 0 < binding.p_value <= 1
    # the ambiguous pairs are one text up to the pronoun: nothing there can tell their two labels apart
    amb = metrics.amb_pronoun
    assert amb.n_train + amb.n_test == len(items) - len(unamb)
    assert amb.sae_top_1 == amb.full_residual == amb.majority == 0.5


def test_readouts_cover_both_conditions_and_every_offset(tiny_model, items_file):
    result = coreference(
        _context(tiny_model, helpers.tiny_sae()), CoreferenceConfig(items_file=items_file, gate_ambiguous=True, **SMALL)
    )
    metrics = result.metrics
    for condition in CONDITIONS:
        n_probe = getattr(metrics.gate_detail, f"n_probe_{condition}")
        for offset in OFFSETS:
            readout = getattr(metrics, readout_name(condition, offset))
            assert readout.n_train + readout.n_test == n_probe  # every item reaches 3 tokens past its pronoun
    assert metrics.gate_detail.n_probe_ambiguous < sum(1 for item in tiny_items() if item.template == "tiny_amb")
    assert {row.part for row in result.gate_by_part} == {
        "tiny_unamb", "tiny_amb", "tiny_unamb/per_item", "tiny_amb/per_item"
    }  # fmt: skip
    assert result.items_source == str(result.items_source) and result.items_hash
    summary = result.summary()
    assert "unamb_pronoun_sae_k1" in summary and "binding_unamb_score" in summary
    assert "amb_pronoun_sae_k1" not in summary  # only the unambiguous pronoun readout is a headline
    labels = [info.label for info in result.metric_info().values()]
    assert len(labels) == len(set(labels))


def test_every_generated_item_dropped_gives_a_nan_result(tiny_model):
    # the tiny tokenizer has no names: " Mary" is several tokens, so every gate fails its one-token check
    result = coreference(_context(tiny_model, helpers.tiny_sae()), CoreferenceConfig(n_pairs=4, **SMALL))
    assert result.metrics.gate.n_items == 0 and result.dropped["continuation_not_one_token"] == 24
    assert math.isnan(result.metrics.unamb_pronoun.sae_top_1) and math.isnan(result.metrics.binding_unamb.score)
    assert result.items_source == "coreference-templates-v1"


def test_a_bad_items_file_is_refused_before_any_model_loads(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prefix": "x", "label": 2, "template": "t", "split": "train"}\n')
    with pytest.raises(UsageError, match="bad.jsonl:1"):
        check(None, CoreferenceConfig(items_file=bad))  # type: ignore[arg-type]
