"""Subject-verb agreement items from our own templates and word lists (written for this project; the Marvin &
Linzen (2018, MIT) design of simple, prepositional-phrase and relative-clause templates guided the choice).

Each item is a prefix that stops right before the main verb, e.g. "The dog near the cars", with the verb pair as
the gate (correct " is", wrong " are") and label 1 for a plural subject. Templates:
- simple:   "The {subject}" or "The {adjective} {subject}"
- pp:       "The {subject} {preposition} the {attractor}"
- obj_rel:  "The {subject} that the {attractor} {past verb}"   (object relative clause)
- subj_rel: "The {subject} that {past verb} the {attractor}"   (subject relative clause)
Past-tense verbs inside the clauses carry no number, so only the nouns do. The attractor is congruent (same
number as the subject) or incongruent (the other number). Items come in minimal pairs (`group`): the same frame,
attractor and verb pair with a singular and a plural subject, so every pair holds one congruent and one
incongruent item and both labels. Noun lemmas are split between train and test (irregular plurals on both
sides), so no probe can memorise a word. Marks: `subject` and `attractor` (the noun's last character); the
pre-verb position is the last token.
"""

from __future__ import annotations

import random
from typing import Literal

from tsae_evals.probing.items import ProbeItem

GENERATOR = "agreement-templates-v1"
"""Recorded as the result's item source: change it whenever the lists or templates change."""
TEMPLATES = ("simple", "pp", "obj_rel", "subj_rel")
WITH_ATTRACTOR = ("pp", "obj_rel", "subj_rel")

REGULAR_NOUNS = (
    ("dog", "dogs"),
    ("cat", "cats"),
    ("teacher", "teachers"),
    ("doctor", "doctors"),
    ("farmer", "farmers"),
    ("student", "students"),
    ("pilot", "pilots"),
    ("lawyer", "lawyers"),
    ("singer", "singers"),
    ("driver", "drivers"),
    ("nurse", "nurses"),
    ("author", "authors"),
    ("officer", "officers"),
    ("soldier", "soldiers"),
    ("artist", "artists"),
    ("worker", "workers"),
    ("horse", "horses"),
    ("bird", "birds"),
    ("baker", "bakers"),
    ("guard", "guards"),
    ("manager", "managers"),
    ("player", "players"),
    ("writer", "writers"),
    ("painter", "painters"),
    ("dancer", "dancers"),
    ("sailor", "sailors"),
    ("king", "kings"),
    ("girl", "girls"),
    ("boy", "boys"),
    ("friend", "friends"),
    ("customer", "customers"),
    ("visitor", "visitors"),
    ("parent", "parents"),
    ("senator", "senators"),
    ("surgeon", "surgeons"),
    ("chef", "chefs"),
    ("judge", "judges"),
    ("actor", "actors"),
)
"""(singular, plural) pairs with a regular plural."""
IRREGULAR_NOUNS = (
    ("child", "children"),
    ("man", "men"),
    ("woman", "women"),
    ("mouse", "mice"),
    ("goose", "geese"),
    ("person", "people"),
    ("wolf", "wolves"),
    ("thief", "thieves"),
    ("fisherman", "fishermen"),
    ("policeman", "policemen"),
)
"""(singular, plural) pairs with an irregular plural, listed by hand."""
VERB_PAIRS = (
    (" is", " are"),
    (" was", " were"),
    (" has", " have"),
    (" seems", " seem"),
    (" likes", " like"),
    (" needs", " need"),
    (" wants", " want"),
    (" looks", " look"),
    (" knows", " know"),
    (" does", " do"),
)
"""(singular, plural) main-verb continuations: the gate's correct/wrong pair."""
ADJECTIVES = ("young", "old", "tall", "small", "happy", "quiet", "busy", "famous", "new", "tired")
"""Optional modifiers of the simple template's subject (the bare noun alone gives too few distinct prefixes)."""
PREPOSITIONS = ("near", "behind", "beside", "with", "next to")
PAST_VERBS = ("saw", "liked", "met", "helped", "followed", "watched", "called", "knew", "visited", "admired")
"""Transitive past-tense verbs: they do not agree in number, so the relative clauses carry number only in nouns."""


def noun_splits(seed: int) -> dict[str, list[tuple[str, str]]]:
    """Noun pairs split in two halves by lemma (regular and irregular each halved, seeded)."""
    rng = random.Random(f"{seed}-agreement-nouns")
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for nouns in (REGULAR_NOUNS, IRREGULAR_NOUNS):
        shuffled = list(nouns)
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        splits["train"] += shuffled[:half]
        splits["test"] += shuffled[half:]
    return splits


def _frame(template: str, subject: str, attractor: str, rng: random.Random) -> tuple[str, str]:
    """The prefix and the filler word (preposition or verb) of one template."""
    if template == "simple":
        adjective = rng.choice(("", *ADJECTIVES))
        return (f"The {adjective} {subject}", adjective) if adjective else (f"The {subject}", "")
    if template == "pp":
        preposition = rng.choice(PREPOSITIONS)
        return f"The {subject} {preposition} the {attractor}", preposition
    verb = rng.choice(PAST_VERBS)
    if template == "obj_rel":
        return f"The {subject} that the {attractor} {verb}", verb
    return f"The {subject} that {verb} the {attractor}", verb


def _marks(prefix: str, subject: str, attractor: str) -> dict[str, int]:
    """The last character of the subject (the first noun) and of the attractor (the noun after it)."""
    start = prefix.index(f" {subject}") + 1
    marks = {"subject": start + len(subject) - 1}
    if attractor:
        position = prefix.index(f" {attractor}", start + len(subject)) + 1
        marks["attractor"] = position + len(attractor) - 1
    return marks


def generate_items(seed: int, n_pairs: int) -> list[ProbeItem]:
    """`n_pairs` minimal pairs per template (2 items each: singular and plural subject), half train and half
    test, the attractor number alternating between pairs. Seeded; no prefix occurs twice."""
    rng = random.Random(f"{seed}-agreement-items")
    splits = noun_splits(seed)
    items: list[ProbeItem] = []
    seen: set[str] = set()
    for template in TEMPLATES:
        made = 0
        attempts = 0
        while made < n_pairs:
            attempts += 1
            if attempts > 100 * n_pairs:
                raise RuntimeError(f"agreement: could not make {n_pairs} distinct {template} pairs")
            split: Literal["train", "test"] = "train" if made % 2 == 0 else "test"
            attractor_plural = template in WITH_ATTRACTOR and (made // 2) % 2 == 1
            subject_pair, attractor_pair = rng.sample(splits[split], 2)
            verbs = rng.choice(VERB_PAIRS)
            frame_seed = rng.random()
            attractor = attractor_pair[attractor_plural] if template in WITH_ATTRACTOR else ""
            pair = []
            for plural in (0, 1):
                subject = subject_pair[plural]
                prefix, filler = _frame(template, subject, attractor, random.Random(frame_seed))
                if template == "simple":
                    condition = "none"
                else:
                    condition = "congruent" if bool(plural) == attractor_plural else "incongruent"
                meta = {
                    "condition": condition,
                    "subject": subject_pair[0],
                    "subject_number": "plural" if plural else "singular",
                    "verb": verbs[0].strip(),
                }
                if filler:
                    meta["filler"] = filler
                if attractor:
                    meta |= {
                        "attractor": attractor_pair[0],
                        "attractor_number": "plural" if attractor_plural else "singular",
                    }
                pair.append(
                    ProbeItem(
                        prefix=prefix,
                        label=plural,
                        template=template,
                        split=split,
                        marks=_marks(prefix, subject, attractor),
                        correct=verbs[plural],
                        wrong=verbs[1 - plural],
                        group=f"{template}-{made}",
                        meta=meta,
                    )
                )
            if any(item.prefix in seen for item in pair):
                continue
            seen.update(item.prefix for item in pair)
            items += pair
            made += 1
    return items
