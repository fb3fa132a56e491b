"""disambiguation: the eval's plumbing on the tiny model (every generated homonym splits there: all dropped and
counted), the rebalancing after the gate, a user's file without marks refused before any model loads, and on a
planted model the latency: a label planted exactly 3 tokens after the cue gives latency 3, chance before it, and
chance at the homonym and for the embedding control."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests import helpers
from tsae_evals.context import EvalContext
from tsae_evals.errors import UsageError
from tsae_evals.evals.disambiguation.config import DisambiguationConfig
from tsae_evals.evals.disambiguation.eval import HOMONYM_DROP, balanced_mask, check, disambiguation
from tsae_evals.probing.encode import encode_items
from tsae_evals.probing.items import ProbeItem, write_items


def _context(model, sae, hook: str) -> EvalContext:
    return helpers.eval_context(model, sae, 16, hook)


def test_on_the_tiny_model_every_generated_homonym_splits_and_the_result_is_nan_with_the_drops_counted(tiny_model):
    ctx = _context(tiny_model, helpers.tiny_sae(), helpers.HOOK)
    result = disambiguation(ctx, DisambiguationConfig(max_items=48, n_bootstrap=100))
    assert result.dropped[HOMONYM_DROP] == 48 and sum(result.dropped.values()) == 48
    assert result.metrics.gate.n_dropped == 48 and result.metrics.gate.n_items == 0
    assert math.isnan(result.metrics.homonym_cue_before.sae_top_1) and math.isnan(result.metrics.latency.before_sae)
    labels = [info.label for info in result.metric_info().values()]
    assert len(labels) == len(set(labels))
    assert "homonym_cue_before_sae_k1" in labels and "latency_before" in labels
    json.dumps(result.unstructured())


def test_a_file_without_marks_is_refused_before_any_model_loads(tmp_path):
    items = [
        ProbeItem(prefix="the bank", label=label, template="t", split=split, marks={"homonym": 7})
        for label in (0, 1)
        for split in ("train", "test")
    ]
    cfg = DisambiguationConfig(items_file=write_items(tmp_path / "items.jsonl", items))
    with pytest.raises(UsageError, match="`cue` mark"):
        check(None, cfg)  # type: ignore[arg-type]


def test_balanced_mask_keeps_as_many_of_each_label_as_the_rarer_has_per_cell():
    tokenizer = helpers.tiny_tokenizer()

    def item(word: str, label: int, template: str = "t") -> ProbeItem:
        return ProbeItem(
            prefix=f"the {word} sat", label=label, template=template, split="train", marks={"homonym": 3 + len(word)}
        )

    items = [item("cat", 0), item("cat", 0), item("cat", 1), item("dogs", 0), item("dogs", 1), item("cat", 1, "u")]
    encoded = encode_items(tokenizer, items, prepend_bos=True)
    correct = torch.tensor([True, True, True, True, False, True])
    keep = balanced_mask(encoded, correct, seed=0)
    # cell (cat, t): two label 0, one label 1 -> one of each; (dogs, t): label 1 wrong -> none; (cat, u): one label
    assert keep[2] and int(keep[:2].sum()) == 1
    assert not keep[3:].any()
    assert torch.equal(balanced_mask(encoded, correct, seed=0), keep)


# --- a planted label: the sense appears exactly LAG tokens after the cue ---------------------------------------------

LAG = 3
PLANT_HOOK = helpers.PLANT_HOOK
HOMONYMS = [f"h{i}" for i in range(4)]
CUES = {label: [f"c{label}x{i}" for i in range(16)] for label in (0, 1)}
ECHOES = {label: [f"e{label}x{i}" for i in range(4)] for label in (0, 1)}
FILLER = ["the", "and", "it", "was", "about", "saw", "then", "f0", "f1", "f2", "f3"]
TEMPLATES = {
    # cue, "and", filler, echo (offset LAG = 3), ...
    "before_0": "the {cue} and {f} {echo} the {h} it was about",
    "after_0": "the {h} saw the {cue} and {f} {echo} it was about",
}


def _tokenizer():
    return helpers.word_level_tokenizer([*FILLER, *HOMONYMS, *CUES[0], *CUES[1], *ECHOES[0], *ECHOES[1]])


def _items() -> list[ProbeItem]:
    """Minimal pairs per (homonym, split, template): the same filler, a cue and an echo word of each label."""
    items = []
    for h_index, homonym in enumerate(HOMONYMS):
        for split_index, split in enumerate(("train", "test")):
            for template, text in TEMPLATES.items():
                for pair in range(4):
                    filler = f"f{(h_index + pair) % 4}"
                    for label in (0, 1):
                        cue = CUES[label][split_index * 8 + (h_index * 2 + pair) % 8]
                        echo = ECHOES[label][(pair + h_index) % 4]
                        prefix = text.format(cue=cue, f=filler, echo=echo, h=homonym)
                        items.append(
                            ProbeItem(
                                prefix=prefix,
                                label=label,
                                template=template,
                                split=split,  # type: ignore[arg-type]
                                marks={
                                    "homonym": prefix.index(f" {homonym} ") + len(homonym),
                                    "cue": prefix.index(cue) + len(cue) - 1,
                                },
                                meta={"homonym": homonym},
                            )
                        )
    return items


@pytest.fixture(scope="module")
def planted():
    """The planted-direction model and SAE (tests.helpers), marking the label-1 echo words."""
    return helpers.planted_direction(_tokenizer(), list(ECHOES[1]), "planted-disambiguation")


def test_latency_of_a_label_planted_exactly_lag_tokens_after_the_cue(planted, tmp_path):
    model, sae = planted
    items = _items()
    path = write_items(tmp_path / "items.jsonl", items)
    cfg = DisambiguationConfig(items_file=path, n_bootstrap=100, latency_max_offset=6, latency_min_items=20)
    result = disambiguation(_context(model, sae, PLANT_HOOK), cfg)
    metrics = result.metrics

    assert sum(result.dropped.values()) == 0 and result.n_probe_items == len(items) == 128
    assert math.isnan(metrics.gate.accuracy)  # no item has a gate: all of them are probed
    curve = {(row.cue_position, row.offset): row for row in result.latency_curve}
    # cue-before: offsets 0..6 after the cue; the planted echo is token LAG after it (before: "the cue and f echo")
    assert sorted(offset for name, offset in curve if name == "before") == list(range(7))
    # cue-after: from the homonym (3 tokens before the cue: "h saw the cue") to 6 after (the item's last token)
    assert sorted(offset for name, offset in curve if name == "after") == list(range(-3, 7))
    for (name, offset), row in curve.items():
        assert row.n_test == 32 and row.n_train == 32
        assert row.sae_accuracy == (1.0 if offset == LAG else 0.5), (name, offset)
    assert metrics.latency.before_sae == metrics.latency.after_sae == LAG
    assert metrics.latency.after_pre_cue_sae == 0.5
    assert metrics.latency.before_sae_mean == pytest.approx((1.0 + 0.5 * 5) / 6)
    assert metrics.latency.after_sae_mean == pytest.approx((1.0 + 0.5 * 5) / 6)
    assert curve[("before", LAG)].full_residual_accuracy == 1.0

    # the homonym and the last token are the same word in both labels: every probe at chance, and so the embedding
    for readout in (metrics.homonym_cue_before, metrics.homonym_cue_after, metrics.last):
        assert readout.sae_top_1 == readout.full_residual == readout.majority == 0.5
        assert readout.n_test == 32 or readout is metrics.last
    assert metrics.last.n_test == 64 and metrics.last.n_train == 64
    assert metrics.embedding.accuracy == 0.5 and metrics.embedding.n_test == 64
    assert metrics.embedding.ci_low < 0.5 < metrics.embedding.ci_high
