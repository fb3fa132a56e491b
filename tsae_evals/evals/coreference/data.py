"""Coreference items from our own templates and word lists (written for this project; the Winogender schemas'
(Rudinger et al. 2018, MIT) "occupation, participant, pronoun" design guided the choice, nothing is copied).

Every item is one sentence "Yesterday {first} told {second} that {pronoun} {predicate}." and a question that asks
the model who the pronoun is, e.g.

    Yesterday Mary told John that he was tired.
    Q: Who was tired?
    A:                                   correct " John", wrong " Mary"

Label 1: the pronoun refers to the first-mentioned person (the teller), 0: to the second (the one told).
Templates (conditions):
- `names_mixed` (unambiguous): a woman's and a man's name, a neutral predicate: only the pronoun's gender decides.
  Minimal pairs swap the pronoun (he/she), so each pair holds both labels with the same names and predicate.
- `names_same` (ambiguous): two names of one gender; the predicate decides (teller: "was sorry", told: "could
  leave now"). Pairs swap the predicate for its partner of the other role.
- `occupation` (ambiguous, Winogender-style): "The {occupation} told the {participant} that {pronoun} ...",
  with the predicate deciding as in `names_same`.
Gender never decides the label: within a condition every (label, pronoun) cell and, for `names_mixed`, every
(label, teller's gender) cell holds the same number of items. In the ambiguous conditions nothing before the
pronoun tells the antecedent; only the predicate after it does (its first one to three tokens).

The gate is the pair's mean of logit(correct) - logit(wrong) (the eval computes it from `group`): SmolLM2-135M
leans towards one position's name whatever the pronoun (item by item it gets about half right, mostly the items
whose antecedent is the nearer name), but between the two items of a pair its answer moves towards the right
person; the pair mean cancels that positional bias.

Train and test share no name, occupation, participant or predicate lemma. Marks: `pronoun`, `antecedent`,
`distractor` (a word's last character; the occupation and participant nouns for `occupation`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from tsae_evals.probing.items import ProbeItem

GENERATOR = "coreference-templates-v1"
"""Recorded as the result's item source: change it whenever the lists or templates change."""
TEMPLATES = ("names_mixed", "names_same", "occupation")
CONDITIONS = {"names_mixed": "unambiguous", "names_same": "ambiguous", "occupation": "ambiguous"}
"""Template -> condition: unambiguous (gender decides) or ambiguous (the predicate decides)."""

FEMALE_NAMES = (
    "Mary", "Anna", "Sarah", "Emma", "Linda", "Susan", "Laura", "Alice", "Helen", "Kate",
    "Julia", "Rachel", "Emily", "Lisa", "Nancy", "Karen", "Grace", "Ruth", "Jane", "Sophie",
)  # fmt: skip
MALE_NAMES = (
    "John", "James", "David", "Michael", "Robert", "Peter", "Paul", "Mark", "George", "Thomas",
    "Daniel", "Steven", "Brian", "Kevin", "Frank", "Henry", "Jack", "Adam", "Tom", "Luke",
)  # fmt: skip
OCCUPATIONS = (
    "doctor", "nurse", "teacher", "lawyer", "farmer", "driver", "baker", "chef", "pilot", "manager",
    "clerk", "dentist", "surgeon", "officer", "guard", "editor", "secretary", "mechanic", "pharmacist",
    "architect", "librarian", "professor", "counselor", "accountant",
)  # fmt: skip
"""The teller in `occupation` items (no gender marked in English)."""
PARTICIPANTS = (
    "patient", "client", "customer", "guest", "visitor", "student", "child", "neighbor", "passenger",
    "tenant", "stranger", "buyer",
)  # fmt: skip
"""The one told in `occupation` items."""
NEUTRAL_PREDICATES = (
    "was tired", "was hungry", "would be late", "had won the prize", "had lost the keys", "was feeling ill",
    "was ready", "would stay home", "had missed the bus", "was getting married", "had found a job",
    "was cold",
)  # fmt: skip
"""Predicates that fit either person equally (the unambiguous template: the pronoun's gender decides)."""
ROLE_PREDICATES = (
    ("was sorry", "looked tired"),
    ("would explain everything", "must wait outside"),
    ("would return soon", "could go home"),
    ("was happy to help", "was free to go"),
    ("would be right back", "was welcome to stay"),
    ("would call back later", "could come in now"),
    ("was glad to help", "should take a seat"),
    ("was busy today", "could leave now"),
)
"""(teller, told) predicate pairs of equal word count: after "X told Y that she", the first makes X the natural
antecedent (apologising, volunteering), the second Y (being permitted, asked or described)."""


def _halves(words: Sequence[Any], rng: random.Random) -> tuple[list[Any], list[Any]]:
    shuffled = list(words)
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:]


def lemma_splits(seed: int) -> dict[str, dict[str, list]]:
    """Every word list split in two seeded halves: `{"train": {list name: words}, "test": {...}}`."""
    rng = random.Random(f"{seed}-coreference-lemmas")
    lists: dict[str, Sequence[Any]] = {
        "female": FEMALE_NAMES,
        "male": MALE_NAMES,
        "occupation": OCCUPATIONS,
        "participant": PARTICIPANTS,
        "neutral": NEUTRAL_PREDICATES,
        "role": ROLE_PREDICATES,
    }
    splits: dict[str, dict[str, list]] = {"train": {}, "test": {}}
    for name, words in lists.items():
        splits["train"][name], splits["test"][name] = _halves(words, rng)
    return splits


def _word_end(text: str, word: str, start: int) -> int:
    """The offset of the last character of the first whole word `word` at or after `start`."""
    found = re.compile(rf"\b{re.escape(word)}\b").search(text, start)
    assert found is not None, (text, word)
    return found.end() - 1


def make_item(
    template: str,
    split: str,
    group: str,
    first: str,
    second: str,
    pronoun: str,
    predicate: str,
    label: int,
    **meta: str,
) -> ProbeItem:
    """One item: the sentence, the question, the gate (antecedent vs distractor) and the marks."""
    article = "The " if template == "occupation" else "Yesterday "  # the first person is never the first token
    other = "the " if template == "occupation" else ""
    sentence = f"{article}{first} told {other}{second} that {pronoun} {predicate}."
    question = f"\nQ: Who {predicate}?\nA:" + (" The" if template == "occupation" else "")
    antecedent, distractor = (first, second) if label == 1 else (second, first)
    first_end = len(article) + len(first) - 1
    second_end = _word_end(sentence, second, first_end + 1)
    pronoun_end = _word_end(sentence, pronoun, second_end + 1)
    return ProbeItem(
        prefix=sentence + question,
        label=label,
        template=template,
        split=split,  # type: ignore[arg-type]
        marks={
            "pronoun": pronoun_end,
            "antecedent": first_end if label == 1 else second_end,
            "distractor": second_end if label == 1 else first_end,
        },
        correct=f" {antecedent}",
        wrong=f" {distractor}",
        group=group,
        meta={
            "condition": CONDITIONS[template],
            "antecedent": antecedent,
            "distractor": distractor,
            "pronoun": pronoun,
            "predicate": predicate,
            **meta,
        },
    )


def _pair(template: str, split: str, group: str, words: dict[str, list], rng: random.Random, index: int) -> list:
    """One minimal pair of `template` (labels 1 and 0); `index` alternates the genders between pairs."""
    female = index % 2 == 0
    if template == "names_mixed":
        woman, man = rng.choice(words["female"]), rng.choice(words["male"])
        first, second = (woman, man) if female else (man, woman)  # the teller's gender alternates
        predicate = rng.choice(words["neutral"])
        genders = {"first_gender": "female" if female else "male", "second_gender": "male" if female else "female"}
        # label 1: the pronoun is the teller's (first); 0: the other person's
        pronouns = {1: "she" if female else "he", 0: "he" if female else "she"}
        return [
            make_item(
                template, split, group, first, second, pronouns[label], predicate, label, role="neutral", **genders
            )
            for label in (1, 0)
        ]
    if template == "names_same":
        first, second = rng.sample(words["female" if female else "male"], 2)
        gender = "female" if female else "male"
        genders = {"first_gender": gender, "second_gender": gender}
    else:
        first, second = rng.choice(words["occupation"]), rng.choice(words["participant"])
        genders = {}
    teller, told = rng.choice(words["role"])
    pronoun = "she" if female else "he"
    return [
        make_item(template, split, group, first, second, pronoun, predicate, label, role=role, **genders)
        for label, predicate, role in ((1, teller, "teller"), (0, told, "told"))
    ]


def generate_items(seed: int, n_pairs: int) -> list[ProbeItem]:
    """`n_pairs` minimal pairs per template (2 items each, labels 1 and 0), half train and half test, the
    pronoun's gender alternating between pairs (a multiple of 4 balances it exactly in both splits). Seeded; no
    prefix occurs twice."""
    rng = random.Random(f"{seed}-coreference-items")
    splits = lemma_splits(seed)
    items: list[ProbeItem] = []
    seen: set[str] = set()
    for template in TEMPLATES:
        for split, wanted in (("train", (n_pairs + 1) // 2), ("test", n_pairs // 2)):
            made = attempts = 0
            while made < wanted:
                attempts += 1
                if attempts > 100 * wanted:
                    raise RuntimeError(f"coreference: could not make {wanted} distinct {template} {split} pairs")
                pair = _pair(template, split, f"{template}-{split}-{made}", splits[split], rng, made)
                if any(item.prefix in seen for item in pair):
                    continue
                seen.update(item.prefix for item in pair)
                items += pair
                made += 1
    return items
