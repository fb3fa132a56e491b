"""The coreference generator: balanced, deduplicated, split-disjoint, gender-balanced items whose marks land on the
pronoun and the two people, and (slow) every item survives SmolLM2's tokenization checks."""

from __future__ import annotations

from collections import Counter

import pytest

from tsae_evals.evals.coreference.data import (
    CONDITIONS,
    FEMALE_NAMES,
    MALE_NAMES,
    OCCUPATIONS,
    PARTICIPANTS,
    TEMPLATES,
    generate_items,
    lemma_splits,
)

N_PAIRS = 16


@pytest.fixture(scope="module")
def items():
    return generate_items(seed=0, n_pairs=N_PAIRS)


def test_sizes_and_labels_are_balanced_per_template_and_split(items):
    counts = Counter((item.template, item.split, item.label) for item in items)
    assert counts == {
        (template, split, label): N_PAIRS // 2
        for template in TEMPLATES
        for split in ("train", "test")
        for label in (0, 1)
    }
    groups: dict[str, list[int]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item.label)
    assert all(sorted(labels) == [0, 1] for labels in groups.values())  # every minimal pair holds both labels


def test_no_prefix_repeats_and_the_generator_is_seeded(items):
    assert len({item.prefix for item in items}) == len(items)
    assert generate_items(seed=0, n_pairs=N_PAIRS) == items
    assert generate_items(seed=1, n_pairs=N_PAIRS) != items


def _lemmas(item) -> set[str]:
    return {item.meta["antecedent"], item.meta["distractor"], item.meta["predicate"]}


def test_train_and_test_share_no_name_occupation_participant_or_predicate(items):
    train = set().union(*(_lemmas(item) for item in items if item.split == "train"))
    test = set().union(*(_lemmas(item) for item in items if item.split == "test"))
    assert train and test and not train & test
    splits = lemma_splits(0)
    for name, words in (("female", FEMALE_NAMES), ("male", MALE_NAMES), ("occupation", OCCUPATIONS)):
        assert sorted(splits["train"][name] + splits["test"][name]) == sorted(words)
    assert not set(splits["train"]["participant"]) & set(splits["test"]["participant"])
    assert len(splits["train"]["participant"]) + len(splits["test"]["participant"]) == len(PARTICIPANTS)


def test_gender_never_decides_the_label(items):
    for split in ("train", "test"):
        for condition in set(CONDITIONS.values()):
            part = [item for item in items if item.split == split and CONDITIONS[item.template] == condition]
            cells = Counter((item.label, item.meta["pronoun"]) for item in part)
            assert len(cells) == 4 and len(set(cells.values())) == 1, (split, condition, cells)
        mixed = [item for item in items if item.split == split and item.template == "names_mixed"]
        cells = Counter((item.label, item.meta["first_gender"]) for item in mixed)
        assert len(cells) == 4 and len(set(cells.values())) == 1
    female, male = set(FEMALE_NAMES), set(MALE_NAMES)
    for item in items:
        antecedent, distractor, pronoun = item.meta["antecedent"], item.meta["distractor"], item.meta["pronoun"]
        if item.template == "names_mixed":  # the pronoun matches the antecedent's gender only
            assert (antecedent in female, distractor in female) == (
                (True, False) if pronoun == "she" else (False, True)
            )
        elif item.template == "names_same":  # it matches both
            assert {antecedent in female, distractor in female} == {pronoun == "she"}
            assert {antecedent in male, distractor in male} == {pronoun == "he"}


def test_marks_land_on_the_pronoun_and_the_two_people(items):
    for item in items:
        sentence = item.prefix.split("\n")[0]
        words = sentence.rstrip(".").split(" ")
        # "Yesterday Mary told John that she ..." / "The doctor told the patient that she ..."
        first, second, pronoun = (1, 4, 6) if item.template == "occupation" else (1, 3, 5)
        ends = [len(" ".join(words[: i + 1])) - 1 for i in range(len(words))]  # each word's last character
        antecedent, distractor = (first, second) if item.label == 1 else (second, first)
        assert item.marks == {"pronoun": ends[pronoun], "antecedent": ends[antecedent], "distractor": ends[distractor]}
        assert words[pronoun] == item.meta["pronoun"] and words[antecedent] == item.meta["antecedent"]
        assert words[distractor] == item.meta["distractor"] and words[pronoun - 1] == "that"
        assert item.correct == f" {words[antecedent]}" and item.wrong == f" {words[distractor]}"
        assert item.prefix.endswith("A:" if item.template != "occupation" else "A: The")
        assert f"Q: Who {item.meta['predicate']}?" in item.prefix


@pytest.mark.slow
def test_every_item_passes_smollm2s_tokenization_checks():
    from transformers import AutoTokenizer

    from tsae_evals.models import smollm2_hf_dir
    from tsae_evals.probing.encode import encode_items

    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf_dir())
    items = generate_items(seed=0, n_pairs=96)
    encoded = encode_items(tokenizer, items, prepend_bos=True, max_length=2048)
    assert encoded.n_dropped == 0 and encoded.n == len(items)
    tokens = [tokenizer.convert_ids_to_tokens(row) for row in encoded.tokens.tolist()]
    for row, item in enumerate(encoded.items):  # each mark reads the word's own token (Ġ: a leading space)
        for mark in ("pronoun", "antecedent", "distractor"):
            assert tokens[row][int(encoded.positions[mark][row])] == f"Ġ{item.meta[mark]}"
