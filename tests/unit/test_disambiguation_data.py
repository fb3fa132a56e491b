"""disambiguation's item generator: at least 20 homonyms with two senses, balanced and deduplicated items, train and
test sharing no cue lemma, marks on the homonym and the cue, minimal pairs, and the homonym check dropping exactly
the homonyms a tokenizer splits."""

from __future__ import annotations

import collections
import re

import pytest

from tests import helpers
from tsae_evals.evals.disambiguation.data import (
    FRAMES,
    GATE_ENDING,
    HOMONYMS,
    drop_split_homonyms,
    generate_items,
    subsample,
)
from tsae_evals.probing.items import ProbeItem, read_items, write_items


@pytest.fixture(scope="module")
def items() -> list[ProbeItem]:
    return generate_items(seed=0)


def _word_at(prefix: str, last_char: int) -> str:
    """The word whose last character is `last_char` (and check that it really ends there)."""
    assert not prefix[last_char + 1 : last_char + 2].isalnum()
    return re.findall(r"\w+$", prefix[: last_char + 1])[0]


def test_the_table_has_at_least_20_homonyms_with_two_distinct_senses_each():
    assert len(HOMONYMS) >= 20
    assert len({h.word for h in HOMONYMS}) == len(HOMONYMS)
    for homonym in HOMONYMS:
        first, second = homonym.senses
        assert first.name != second.name and first.gate != second.gate
        assert not set(first.cues) & set(second.cues)
        assert len(first.cues) == len(second.cues) == 8


def test_a_cue_lemma_means_one_label_everywhere_and_never_is_a_homonym_or_its_own_gate_word():
    labels: dict[str, set[int]] = collections.defaultdict(set)
    words = {h.word for h in HOMONYMS}
    for homonym in HOMONYMS:
        cues = {cue.lower() for sense in homonym.senses for cue in sense.cues}
        for label, sense in enumerate(homonym.senses):
            gate = sense.gate.strip().lower()
            assert sense.gate.startswith(" ") and gate not in cues and gate.rstrip("s") not in cues
            for cue in sense.cues:
                labels[cue.lower()].add(label)
    assert all(len(seen) == 1 for seen in labels.values())  # no cue cues sense 0 of one word and 1 of another
    assert not words & set(labels)


def test_items_are_deduplicated_balanced_and_seeded(items):
    assert len({item.prefix for item in items}) == len(items)
    per_cell = collections.Counter((i.meta["homonym"], i.split, i.template, i.label) for i in items)
    for (homonym, split, template, label), count in per_cell.items():
        assert per_cell[(homonym, split, template, 1 - label)] == count
    assert {i.template for i in items} == {frame.id for frame in FRAMES}
    assert {i.meta["homonym"] for i in items} == {h.word for h in HOMONYMS}
    assert generate_items(seed=0) == items
    assert generate_items(seed=1) != items


def test_train_and_test_share_no_cue_lemma(items):
    cues = {split: {i.meta["cue"].lower() for i in items if i.split == split} for split in ("train", "test")}
    assert cues["train"] and cues["test"] and not cues["train"] & cues["test"]
    # every (homonym, sense) keeps cues on both sides: 3 or 4 of its 8 per split
    for homonym in HOMONYMS:
        for split in ("train", "test"):
            n = {i.meta["cue"] for i in items if i.meta["homonym"] == homonym.word and i.split == split}
            assert 6 <= len(n) <= 8


def test_labels_senses_gates_and_marks_agree_with_the_table(items):
    table = {h.word: h for h in HOMONYMS}
    for item in items:
        homonym = table[item.meta["homonym"]]
        sense = homonym.senses[item.label]
        assert item.meta["sense"] == sense.name and item.meta["cue"] in sense.cues
        assert (item.correct, item.wrong) == (sense.gate, homonym.senses[1 - item.label].gate)
        assert _word_at(item.prefix, item.marks["homonym"]) == homonym.word
        assert _word_at(item.prefix, item.marks["cue"]) == item.meta["cue"]
        before = item.marks["cue"] < item.marks["homonym"]
        assert item.template.startswith("before" if before else "after")
        assert item.meta["cue_position"] == ("before" if before else "after")
        assert item.prefix.endswith(GATE_ENDING) and set(item.marks) == {"homonym", "cue"}


def test_by_construction_the_homonym_alone_predicts_the_test_labels_at_chance(items):
    """Any rule that sees only the homonym (e.g. its embedding) is right on exactly half of every homonym's test
    items: each homonym's test items carry both labels equally often (after subsampling too)."""
    for chosen in (items, subsample(items, 480, seed=0)):
        test = [item for item in chosen if item.split == "test"]
        for homonym in HOMONYMS:
            labels = [item.label for item in test if item.meta["homonym"] == homonym.word]
            assert labels and sum(labels) * 2 == len(labels)


def test_subsample_makes_minimal_pairs_spread_over_cells(items):
    chosen = subsample(items, 480, seed=0)
    assert len(chosen) == 480 and len({item.prefix for item in chosen}) == 480
    pairs = collections.defaultdict(list)
    for item in chosen:
        pairs[item.group].append(item)
    assert len(pairs) == 240 and all(len(pair) == 2 for pair in pairs.values())
    for first, second in pairs.values():
        assert {first.label, second.label} == {0, 1}
        assert (first.split, first.template, first.meta["homonym"]) == (
            second.split,
            second.template,
            second.meta["homonym"],
        )
        # the two prefixes differ exactly in the cue word
        assert first.prefix.replace(first.meta["cue"], "{cue}") == second.prefix.replace(second.meta["cue"], "{cue}")
    cells = collections.Counter((i.meta["homonym"], i.split, i.template) for i in chosen)
    assert max(cells.values()) == 2  # 480 items = 240 pairs over 720 cells: at most one pair per cell
    assert subsample(items, 480, seed=0) == chosen
    everything = subsample(items, 10**6, seed=0)
    assert len(everything) == len(items)  # every item pairs up: the generator balances each cell


def test_items_round_trip_through_a_jsonl_file(items, tmp_path):
    chosen = subsample(items, 40, seed=0)
    assert read_items(write_items(tmp_path / "items.jsonl", chosen)) == chosen


def test_homonym_check_drops_exactly_the_homonyms_the_tokenizer_splits():
    tokenizer = helpers.tiny_tokenizer()  # every word of helpers.WORDS is one token; "cats" is cat + s

    def item(word: str, label: int, **meta: str) -> ProbeItem:
        prefix = f"the {word} sat on a mat"
        return ProbeItem(
            prefix=prefix, label=label, template="t", split="train", marks={"homonym": 3 + len(word)}, meta=meta
        )

    items = [
        item("cat", 0, homonym="cat"),
        item("cat", 1, homonym="cat"),
        item("cats", 0, homonym="cats"),
        item("cats", 1, homonym="cats"),
        item("dogs", 0),  # no meta: judged alone
        item("cats", 1),  # no meta: dropped alone
    ]
    items.append(  # its own word ("mat") is whole, but it names a homonym that splits elsewhere: it goes too
        ProbeItem(
            prefix="the mat", label=0, template="t", split="train", marks={"homonym": 6}, meta={"homonym": "cats"}
        )
    )
    items.append(ProbeItem(prefix="the mat", label=0, template="t", split="train"))  # no mark: kept
    kept, dropped = drop_split_homonyms(items, tokenizer)
    assert dropped == 4
    assert kept == [items[0], items[1], items[4], items[7]]


@pytest.mark.slow
def test_smollm2_keeps_every_homonym_cue_and_gate_word_whole():
    from transformers import AutoTokenizer

    from tsae_evals.models import smollm2_hf_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf_dir())
    words = {f" {h.word}" for h in HOMONYMS}
    words |= {f" {cue}" for h in HOMONYMS for s in h.senses for cue in s.cues} | {
        s.gate for h in HOMONYMS for s in h.senses
    }
    split = [word for word in words if len(tokenizer(word, add_special_tokens=False)["input_ids"]) != 1]
    assert split == []
    kept, dropped = drop_split_homonyms(generate_items(seed=0), tokenizer)
    assert dropped == 0
