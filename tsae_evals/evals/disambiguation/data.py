"""Homonym items for the disambiguation probe, generated from our own word lists: the same word in two senses, the
sense fixed by a cue word placed before the homonym in some frames and after it in others.

Each homonym has two senses; each sense has cue nouns that point to it ("river" for bank/river, "loan" for
bank/finance) and one gate word, a topic word that fits that sense and not the other (" water" / " finance"). An
item is one frame filled with a homonym and one cue of one sense, followed by the gate ending; its label is the
sense. Label 0 is always the natural-world sense (animal, plant, landscape, weather, body) and label 1 the
human-made one (artifact, institution, activity), so a single probe can be fitted over all homonyms at once.
Every homonym occurs equally often under both labels, so its token embedding alone carries no label information
(the eval checks this control).

Gate words were chosen once, on SmolLM2-135M-Instruct and 960 train-split items (of a draft whose cue lists
differed in a few words), as the pair with the best worse-sense accuracy among 2-5 hand-written topic words per
sense: a pair with a lopsided prior would test the prior, not the context. Both are compared as the next token
after GATE_ENDING. Every homonym, cue and gate word is one SmolLM2 token, so a pair's two items tokenise alike.

Split rule: by cue lemma. Every cue lemma is assigned to train or test once for the whole table (a lemma that cues
two homonyms lands in the same split for both), so a probe cannot score by recognising a cue word it was fitted
on. Frames and homonyms occur in both splits, under both labels equally often, so memorising them gains nothing.
The gate words are not in the prefix (so the model cannot copy them) and are never cue words of their homonym.

Marks (character offsets of a word's last character): `homonym` and `cue`. The eval reads the positions after the
cue (and, in cue-after items, those from the homonym up to the cue) as token offsets from the `cue` mark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tsae_evals.probing.items import ProbeItem

if TYPE_CHECKING:
    from collections.abc import Iterable

GENERATOR = "disambiguation-v1"
"""The generator's name and version, bumped whenever the word lists, frames or split rule change (results record
it with the items hash)."""


@dataclass(frozen=True)
class Sense:
    """One sense of a homonym: its name, the cue nouns that select it and its gate word."""

    name: str
    """Short sense name, recorded in each item's meta."""
    cues: tuple[str, ...]
    """Nouns that select this sense in context (each read as "the {cue}")."""
    gate: str
    """The continuation (leading space, one token for the model) that fits this sense after the gate ending."""


@dataclass(frozen=True)
class Homonym:
    """A word with two senses; sense 0 is label 0, sense 1 is label 1."""

    word: str
    """The homonym (lower case, read as " {word}")."""
    senses: tuple[Sense, Sense]
    """Its two senses, in label order."""


def _h(word: str, name0: str, cues0: str, gate0: str, name1: str, cues1: str, gate1: str) -> Homonym:
    return Homonym(word, (Sense(name0, tuple(cues0.split()), gate0), Sense(name1, tuple(cues1.split()), gate1)))


HOMONYMS: tuple[Homonym, ...] = (
    _h("bank", "river", "river creek canoe mud reeds fishing ducks flood", " water",
       "finance", "loan cash account mortgage savings deposit credit interest", " finance"),
    _h("bat", "animal", "cave vampire insects moth wings fur owl nest", " wildlife",
       "sport", "baseball cricket pitcher bases helmet glove stadium team", " games"),
    _h("spring", "season", "winter summer April blossoms snow autumn flowers sunshine", " weather",
       "coil", "mattress coil steel screw gear clock lever hinge", " engineering"),
    _h("seal", "animal", "ocean fish penguin whale ice beach dolphin arctic", " nature",
       "stamp", "envelope wax document king parchment treaty charter decree", " history"),
    _h("crane", "bird", "geese marsh swamp feathers lake wetlands pond flock", " wildlife",
       "machine", "construction building tower steel cargo truck bridge site", " engineering"),
    _h("bass", "fish", "lake fishing trout boat bait rod river salmon", " fish",
       "music", "guitar band drums concert amplifier jazz singer song", " musicians"),
    _h("mole", "animal", "garden tunnel soil lawn burrow roots dirt hole", " nature",
       "spy", "agent secret agency espionage police CIA intelligence embassy", " spies"),
    _h("mouse", "animal", "cheese cat trap hole barn rat kitchen tail", " animals",
       "computer", "keyboard screen laptop click cursor monitor software desk", " technology"),
    _h("plant", "vegetation", "garden flower seeds soil pot leaves watering sunlight", " gardening",
       "factory", "factory workers steel production engineers power nuclear chemicals", " energy"),
    _h("trunk", "tree", "oak forest branch roots leaves pine woods elm", " nature",
       "car", "luggage vehicle driver garage bags road trip engine", " travel"),
    _h("shell", "sea", "sand ocean crab snail turtle coast waves oyster", " sea",
       "weapon", "cannon soldier army artillery battle gun explosion rifle", " war"),
    _h("rock", "stone", "cliff hill sand stone cave granite canyon volcano", " mountains",
       "music", "guitar band concert drums singer album song festival", " music"),
    _h("star", "sky", "sky telescope planet galaxy moon night sun astronomy", " space",
       "celebrity", "film actor fame celebrity fans camera stage award", " movies"),
    _h("current", "water", "river ocean swimming waves boat tide creek sea", " nature",
       "electric", "wire battery voltage circuit power cable magnet charge", " technology"),
    _h("nut", "food", "squirrel tree almond snack peanut walnut cake harvest", " cooking",
       "hardware", "nail screw wrench bolt machine engine bike hammer", " engineering"),
    _h("organ", "body", "heart liver doctor surgery transplant kidney blood patient", " health",
       "instrument", "church pipes choir piano concert hymn cathedral melody", " music"),
    _h("date", "fruit", "palm fruit sugar dessert desert fig honey tree", " cooking",
       "romance", "dinner romance girlfriend husband restaurant couple wedding kiss", " relationships"),
    _h("log", "wood", "fire forest axe fireplace cabin tree campfire lumber", " nature",
       "record", "computer server error file captain ship data software", " technology"),
    _h("mint", "herb", "tea garden leaves herb candy gum lemon basil", " gardening",
       "coins", "coins gold treasury government silver currency metal dollar", " finance"),
    _h("cell", "biology", "biology microscope genome tissue blood nucleus bacteria membrane", " medicine",
       "prison", "prison prisoner jail guard police bars criminal court", " law"),
    _h("bug", "insect", "garden grass beetle ant leaf spider flower wings", " insects",
       "software", "code computer program software crash developer app server", " technology"),
    _h("cloud", "weather", "rain sky storm thunder sun wind snow umbrella", " nature",
       "computing", "server data software storage internet computer upload network", " technology"),
    _h("web", "spider", "insects fly silk corner ceiling garden dew moth", " spiders",
       "internet", "internet browser website online page server search link", " computers"),
    _h("virus", "disease", "flu fever doctor vaccine disease hospital patient infection", " medicine",
       "computer", "computer software hacker email antivirus files laptop password", " security"),
    _h("pupil", "eye", "eye light iris lens vision retina eyelid glasses", " health",
       "student", "teacher class lesson homework classroom exam grades student", " school"),
    _h("worm", "animal", "soil garden bird fishing dirt rain compost beetle", " animals",
       "malware", "computer network hacker software email server firewall antivirus", " technology"),
    _h("buck", "deer", "deer forest stag hunter moose meadow elk woods", " nature",
       "dollar", "dollar cash price wallet salary store cents rent", " money"),
    _h("ram", "sheep", "sheep farm wool horns flock lamb goat meadow", " farming",
       "memory", "computer laptop memory processor CPU chip upgrade motherboard", " technology"),
    _h("stream", "creek", "forest creek trout rocks valley mountain moss waterfall", " rivers",
       "video", "video online viewers channel broadcast platform subscribers gaming", " technology"),
    _h("sole", "fish", "fish ocean sea cod tuna seafood lemon fisherman", " cooking",
       "shoe", "socks boot jeans heel leather rubber shop fashion", " shoes"),
)  # fmt: skip
"""The homonym table: 30 words, two senses each, 8 cue nouns per sense, one gate word per sense. Sense 0 is always
the natural-world sense (a living thing, landscape, weather, the body) and sense 1 the human-made one (an
artifact, institution or activity), so one probe direction can serve every homonym."""


@dataclass(frozen=True)
class Frame:
    """A sentence frame with a homonym slot {h} and a cue slot {cue}."""

    id: str
    """Template id: `before_N` (cue before the homonym) or `after_N` (cue after it)."""
    text: str
    """The sentence, with "the {h}" and "the {cue}" slots."""

    @property
    def cue_position(self) -> Literal["before", "after"]:
        return "before" if self.id.startswith("before") else "after"


FRAMES: tuple[Frame, ...] = (
    Frame("before_0", "After a long talk about the {cue}, she pointed at the {h}"),
    Frame("before_1", "He was reading about the {cue} when he first noticed the {h}"),
    Frame("before_2", "The story about the {cue} also mentioned the {h}"),
    Frame("before_3", "Because of the {cue}, everyone was talking about the {h}"),
    Frame("before_4", "We talked about the {cue} for hours and then about the {h}"),
    Frame("before_5", "In the photo of the {cue} you can also see the {h}"),
    Frame("after_0", "She pointed at the {h} after a long talk about the {cue}"),
    Frame("after_1", "He first noticed the {h} when he was reading about the {cue}"),
    Frame("after_2", "The story mentioned the {h} and also the {cue}"),
    Frame("after_3", "Everyone was talking about the {h} because of the {cue}"),
    Frame("after_4", "We talked about the {h} for hours and then about the {cue}"),
    Frame("after_5", "You can see the {h} in the photo of the {cue}"),
)
"""Six cue-before and six cue-after frames (each `after_N` mirrors `before_N`)."""

GATE_ENDING = ". This is a text about"
"""Appended to every frame: the gate compares the two senses' gate words as the next token after it."""

SPLITS: tuple[Literal["train", "test"], ...] = ("train", "test")
TEST_FRACTION = 0.5
"""Share of the cue lemmas (over the whole table) that go to the test split."""


def _cue_splits(homonyms: Iterable[Homonym], seed: int) -> dict[str, str]:
    """Each cue lemma's split, one assignment for the whole table, as even as possible within every sense.

    Lemmas are visited in a seeded order; each goes to the split its senses are shortest of (ties: the split with
    fewer lemmas so far, then train)."""
    senses = [sense for homonym in homonyms for sense in homonym.senses]
    lemmas = sorted({cue.lower() for sense in senses for cue in sense.cues})
    random.Random(f"disambiguation-split-{seed}").shuffle(lemmas)
    owners: dict[str, list[int]] = {}
    for index, sense in enumerate(senses):
        for cue in sense.cues:
            owners.setdefault(cue.lower(), []).append(index)
    counts = [{"train": 0, "test": 0} for _ in senses]
    totals = {"train": 0, "test": 0}
    assignment: dict[str, str] = {}
    for lemma in lemmas:
        need = {
            split: sum(
                counts[i][split] / (TEST_FRACTION if split == "test" else 1 - TEST_FRACTION) for i in owners[lemma]
            )
            for split in ("train", "test")
        }
        split = min(("train", "test"), key=lambda s: (need[s], totals[s], s != "train"))
        assignment[lemma] = split
        totals[split] += 1
        for i in owners[lemma]:
            counts[i][split] += 1
    return assignment


def _fill(frame: Frame, homonym: str, cue: str) -> tuple[str, dict[str, int]]:
    """The prefix (frame + gate ending) and its `homonym` and `cue` marks."""
    h_at, cue_at = frame.text.index("{h}"), frame.text.index("{cue}")
    if h_at < cue_at:
        h_start, cue_start = h_at, cue_at + len(homonym) - len("{h}")
    else:
        cue_start, h_start = cue_at, h_at + len(cue) - len("{cue}")
    prefix = frame.text.replace("{h}", homonym).replace("{cue}", cue) + GATE_ENDING
    return prefix, {"homonym": h_start + len(homonym) - 1, "cue": cue_start + len(cue) - 1}


def generate_items(seed: int = 0, homonyms: Iterable[Homonym] = HOMONYMS) -> list[ProbeItem]:
    """Every (homonym, sense, cue, frame) item, split by cue lemma, in a seeded order (deterministic per seed).

    Within each split and homonym, both senses get the same number of cues (surplus cues of the richer sense are
    dropped, seeded), so labels are balanced per homonym, per frame and per split. `subsample` pairs them."""
    homonyms = tuple(homonyms)
    splits = _cue_splits(homonyms, seed)
    rng = random.Random(f"disambiguation-items-{seed}")
    items: list[ProbeItem] = []
    for homonym in homonyms:
        for split in SPLITS:
            chosen = [sorted(c for c in sense.cues if splits[c.lower()] == split) for sense in homonym.senses]
            n = min(len(cues) for cues in chosen)
            chosen = [rng.sample(cues, n) for cues in chosen]
            for label, (sense, cues) in enumerate(zip(homonym.senses, chosen, strict=True)):
                other = homonym.senses[1 - label]
                for cue in sorted(cues):
                    for frame in FRAMES:
                        prefix, marks = _fill(frame, homonym.word, cue)
                        items.append(
                            ProbeItem(
                                prefix=prefix,
                                label=label,
                                template=frame.id,
                                split=split,
                                marks=marks,
                                correct=sense.gate,
                                wrong=other.gate,
                                meta={
                                    "homonym": homonym.word,
                                    "sense": sense.name,
                                    "cue": cue,
                                    "cue_position": frame.cue_position,
                                },
                            )
                        )
    rng.shuffle(items)
    return items


def _single_token_word(offsets: list[tuple[int, int]], prefix: str, last_char: int) -> bool:
    """Whether the word ending at `last_char` is exactly one token (a leading space may belong to it)."""
    start = last_char
    while start > 0 and prefix[start - 1].isalnum():
        start -= 1
    covering = [(a, b) for a, b in offsets if b > start and a <= last_char and prefix[a:b].strip()]
    return len(covering) == 1 and covering[0][0] <= start and covering[0][1] > last_char


def drop_split_homonyms(items: list[ProbeItem], tokenizer: Any) -> tuple[list[ProbeItem], int]:
    """`(kept, n_dropped)`: the items whose homonym (the word at the `homonym` mark) is one token for `tokenizer`.

    An item without the mark is kept. A homonym named in `meta["homonym"]` is dropped as a whole (every item of
    both senses) as soon as one of its items splits, so labels stay balanced per homonym."""
    if not items:
        return [], 0
    encoded = tokenizer([item.prefix for item in items], add_special_tokens=False, return_offsets_mapping=True)
    bad_items: set[int] = set()
    bad_words: set[str] = set()
    for index, item in enumerate(items):
        mark = item.marks.get("homonym")
        if mark is None:
            continue
        offsets = [tuple(pair) for pair in encoded["offset_mapping"][index]]
        if not _single_token_word(offsets, item.prefix, mark):  # type: ignore[arg-type]
            bad_items.add(index)
            if "homonym" in item.meta:
                bad_words.add(item.meta["homonym"])
    kept = [
        item
        for index, item in enumerate(items)
        if index not in bad_items and not ("homonym" in item.meta and item.meta["homonym"] in bad_words)
    ]
    return kept, len(items) - len(kept)


def subsample(items: list[ProbeItem], max_items: int, seed: int = 0) -> list[ProbeItem]:
    """At most `max_items` items as minimal pairs: two items of one (homonym, split, template) cell, one of each
    sense, that differ only in the cue word; each pair gets a `group` id (so a tokenizer that gives the two cues
    different lengths drops the pair, and every position before the cue reads the same text in both).

    Cells are visited round-robin in a seeded order, one pair per visit, so pairs spread evenly over homonyms,
    templates and splits, and labels stay balanced within each."""
    rng = random.Random(f"disambiguation-subsample-{seed}")
    cells: dict[tuple[str, str, str], tuple[list[ProbeItem], list[ProbeItem]]] = {}
    for item in items:
        key = (item.meta.get("homonym", ""), str(item.split), item.template)
        cells.setdefault(key, ([], []))[item.label].append(item)
    order = sorted(cells)
    rng.shuffle(order)
    for key in order:
        for side in cells[key]:
            rng.shuffle(side)
    chosen: list[ProbeItem] = []
    taken = dict.fromkeys(order, 0)
    while len(chosen) + 2 <= max_items:
        took = False
        for key in order:
            zeros, ones = cells[key]
            if zeros and ones and len(chosen) + 2 <= max_items:
                group = "/".join((*key, str(taken[key])))
                chosen += [side.pop().model_copy(update={"group": group}) for side in (zeros, ones)]
                taken[key] += 1
                took = True
        if not took:
            break
    rng.shuffle(chosen)
    return chosen
