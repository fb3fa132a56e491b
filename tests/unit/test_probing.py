"""tsae_evals.probing: the tokenization checks drop exactly the bad items, one model forward serves several SAEs,
a planted number direction is found by a top-1 latent probe (and not by a random SAE), and the carry curve of a
latent planted for exactly D tokens."""

from __future__ import annotations

import math

import pytest
import torch

from tests import helpers
from tsae_evals.probing import forward
from tsae_evals.probing.encode import DROP_REASONS, encode_items
from tsae_evals.probing.items import ProbeItem
from tsae_evals.probing.probes import (
    bootstrap_accuracy,
    carry_curve,
    encode_at,
    gather,
    offset_index,
    probe_readouts,
    random_sae_codes,
    score_readout,
)


def _item(prefix: str, label: int, split: str = "train", *, mark: str = "", **fields) -> ProbeItem:
    """An item whose `subject` mark is the last character of the first occurrence of `mark` (if given)."""
    marks = {"subject": prefix.index(mark) + len(mark) - 1} if mark else {}
    return ProbeItem(prefix=prefix, label=label, template="t", split=split, marks=marks, **fields)


# --- tokenization checks ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny tokenizer: every word of helpers.WORDS is one token, `cats` splits into `cat` + `s`."""
    return helpers.tiny_tokenizer()


def test_the_tiny_tokenizer_splits_cats_and_keeps_cat_whole(tokenizer):
    assert tokenizer.convert_ids_to_tokens(tokenizer("cats", add_special_tokens=False)["input_ids"]) == ["cat", "s"]
    assert len(tokenizer("cat dogs and while", add_special_tokens=False)["input_ids"]) == 4


def test_checks_drop_exactly_the_bad_items(tokenizer):
    gate = {"correct": " and", "wrong": " while"}
    items = [
        _item("the cat sat", 0, mark="cat", group="a", **gate),  # kept
        _item("the dogs sat", 1, mark="dogs", group="a", **gate),  # kept
        _item("the cat ran", 0, mark="cat", correct=" cats", wrong=" dogs"),  # the correct continuation splits
        _item("the dogs ran", 1, mark="dogs", correct=" and", wrong=" cats"),  # the wrong continuation splits
        _item("the cat ran", 0, mark="cat", group="b", **gate),  # group b: 3 tokens ...
        _item("the cats ran", 1, mark="cats", group="b", **gate),  # ... and 4 tokens: both dropped
        ProbeItem(prefix="the birds sang", label=1, template="t", split="test", marks={"gap": 3}, **gate),  # a space
        _item("the birds sang songs about rivers", 1, mark="birds", group="c", **gate),  # 7 tokens > 6
        _item("the cat sat", 0, mark="cat", group="c", **gate),  # partner of the too-long item: kept
        _item("the mat", 0),  # no gate, no mark: kept
    ]
    encoded = encode_items(tokenizer, items, prepend_bos=True, max_length=6)

    assert set(encoded.dropped) == set(DROP_REASONS)
    assert encoded.dropped == {
        "continuation_not_one_token": 2,
        "mark_without_token": 1,
        "too_long": 1,
        "group_length_mismatch": 2,
    }
    kept_prefixes = [item.prefix for item in encoded.items]
    assert kept_prefixes == ["the cat sat", "the dogs sat", "the cat sat", "the mat"]
    ids = {word: tokenizer.convert_tokens_to_ids(word) for word in ("the", "cat", "dogs", "sat", "mat", "and", "while")}
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    assert encoded.tokens.tolist() == [
        [bos, ids["the"], ids["cat"], ids["sat"]],
        [bos, ids["the"], ids["dogs"], ids["sat"]],
        [bos, ids["the"], ids["cat"], ids["sat"]],
        [bos, ids["the"], ids["mat"], pad],
    ]
    assert encoded.lengths.tolist() == [4, 4, 4, 3]
    assert encoded.positions["subject"].tolist() == [2, 2, 2, -1]  # BOS, the, cat: the noun is token 2
    assert encoded.positions["last"].tolist() == [3, 3, 3, 2]
    assert encoded.correct_ids.tolist() == [ids["and"]] * 3 + [-1]
    assert encoded.wrong_ids.tolist() == [ids["while"]] * 3 + [-1]
    assert encoded.labels.tolist() == [0, 1, 0, 0]

    without_bos = encode_items(tokenizer, items, prepend_bos=False)
    # no max_length: the long item stays, and now its group c differs in length (6 and 3 tokens): both go
    assert without_bos.dropped["too_long"] == 0 and without_bos.dropped["group_length_mismatch"] == 4
    assert [item.prefix for item in without_bos.items] == ["the cat sat", "the dogs sat", "the mat"]
    assert without_bos.positions["subject"].tolist() == [1, 1, -1]  # no BOS: the noun is token 1


# --- one forward per item set -------------------------------------------------------------------------------------


def _word_items(n: int = 12) -> list[ProbeItem]:
    nouns = ["cat", "dogs", "birds", "trains", "boats", "children"]
    items = []
    for index in range(n):
        noun = nouns[index % len(nouns)]
        prefix = f"the {noun} sat on a mat" if index % 2 else f"the {noun} ran"
        items.append(
            _item(prefix, index % 2, "train" if index < n // 2 else "test", mark=noun, correct=" and", wrong=" at")
        )
    return items


def test_one_forward_serves_two_saes_and_matches_the_models_own_unpadded_run(tiny_model):
    forward.clear_cache()
    encoded = encode_items(tiny_model.tokenizer, _word_items(), prepend_bos=True)
    assert encoded.lengths.unique().numel() == 2  # padded rows really occur
    before = forward.forwards_run()
    saes = [helpers.tiny_sae(seed=0), helpers.tiny_sae(seed=1)]
    latents = []
    for sae in saes:  # what two SAEs of one run do: each asks for its hook's activations
        shared = forward.item_forward(tiny_model, encoded, [helpers.HOOK])
        index = encoded.positions["subject"][:, None]
        latents.append(encode_at(sae, shared.activations[helpers.HOOK], encoded.lengths, index, first_text_position=1))
    assert forward.forwards_run() == before + 1
    assert not torch.equal(latents[0].latents, latents[1].latents)

    # a second hook runs once more (for that hook only); asking again runs nothing
    forward.item_forward(tiny_model, encoded, ["blocks.1.hook_resid_post"])
    forward.item_forward(tiny_model, encoded, [helpers.HOOK, "blocks.1.hook_resid_post"])
    assert forward.forwards_run() == before + 2

    # against the model run on each item alone (no padding), with full logits
    for row in range(encoded.n):
        length = int(encoded.lengths[row])
        tokens = encoded.tokens[row : row + 1, :length]
        with torch.no_grad():
            logits, cache = tiny_model.run_with_cache(tokens, prepend_bos=False)
        expected = logits[0, -1, encoded.correct_ids[row]] - logits[0, -1, encoded.wrong_ids[row]]
        assert float(shared.logit_diff[row]) == pytest.approx(float(expected), abs=1e-5)
        assert torch.allclose(shared.activations[helpers.HOOK][row, :length], cache[helpers.HOOK][0], atol=1e-5)


def test_edited_logit_diff_without_an_edit_is_the_gate_and_an_edit_changes_it(tiny_model):
    encoded = encode_items(tiny_model.tokenizer, _word_items(), prepend_bos=True)
    gate = forward.item_forward(tiny_model, encoded, [helpers.HOOK]).logit_diff
    rows = torch.tensor([1, 4, 7])
    untouched = forward.edited_logit_diff(tiny_model, encoded, helpers.HOOK, lambda rows, x: x, rows, batch_size=2)
    assert torch.allclose(untouched, gate[rows], atol=1e-5)
    zeroed = forward.edited_logit_diff(tiny_model, encoded, helpers.HOOK, lambda rows, x: x * 0, rows)
    assert not torch.allclose(zeroed, gate[rows], atol=1e-3)


# --- a planted number direction -----------------------------------------------------------------------------------

CARRY = 2
"""Echo tokens after the noun that carry the noun's label (the planted latent persists exactly this long)."""
PLURAL = [f"p{i}" for i in range(40)]
SINGULAR = [f"s{i}" for i in range(40)]
ECHO_PLURAL = [f"x{i}" for i in range(8)]
ECHO_SINGULAR = [f"y{i}" for i in range(8)]
FILLER = ["the", "sat", "on", "a", "mat", "and", "or"]
PLANT_HOOK = helpers.PLANT_HOOK


@pytest.fixture(scope="module")
def planted():
    """A one-layer model whose residual at PLANT_HOOK (token + position embedding) is orthogonal to a unit
    direction u except for `+2u` at plural nouns and at the CARRY echo words after them; an SAE whose latent 0
    reads u (and whose other latents never fire); and items `the NOUN E1 E2 sat on the mat`."""
    tokenizer = helpers.word_level_tokenizer([*FILLER, *PLURAL, *SINGULAR, *ECHO_PLURAL, *ECHO_SINGULAR])
    model, sae = helpers.planted_direction(tokenizer, [*PLURAL, *ECHO_PLURAL], "planted")

    rng = torch.Generator().manual_seed(1)
    items = []
    for label, nouns, echoes in ((1, PLURAL, ECHO_PLURAL), (0, SINGULAR, ECHO_SINGULAR)):
        for index, noun in enumerate(nouns):
            picks = torch.randint(len(echoes), (CARRY,), generator=rng).tolist()
            prefix = f"the {noun} {' '.join(echoes[i] for i in picks)} sat on the mat"
            items.append(_item(prefix, label, "train" if index < len(nouns) // 2 else "test", mark=noun))
    encoded = encode_items(tokenizer, items, prepend_bos=True)
    assert encoded.n == len(items) and encoded.n_dropped == 0
    return model, sae, encoded


def test_a_latent_aligned_with_the_planted_direction_is_the_top_1_probe_and_a_random_sae_is_not(planted):
    model, sae, encoded = planted
    activations = forward.item_forward(model, encoded, [PLANT_HOOK]).activations[PLANT_HOOK]
    index = encoded.positions["subject"][:, None]
    codes = encode_at(sae, activations, encoded.lengths, index, first_text_position=1)
    # latent 0 fires on the plural noun and its CARRY echoes: 1 + CARRY of the 8 text tokens of half the items
    assert codes.l0 == pytest.approx((1 + CARRY) / 8 / 2)
    random_codes = random_sae_codes(
        activations, encoded.lengths, index, d_sae=64, l0=codes.l0, first_text_position=1, seed=0
    )
    assert int((random_codes[:, 0] > 0).sum(-1).max()) == 1  # TopK at the SAE's L0, rounded up to 1
    y, train = encoded.labels, encoded.is_train
    scores = score_readout(
        codes.latents[:, 0],
        gather(activations, encoded.positions["subject"]),
        random_codes[:, 0],
        y,
        train,
        ~train,
        seed=0,
    )
    assert scores.sae_probes[1].ranked == [0]
    assert scores.sae[1].value == 1.0 and scores.n_test == 40
    # the residual carries it too, but a C=1 probe on 32 dims of 40 items also fits some of their noise
    assert scores.full_residual.value >= 0.8
    assert scores.random_sae[1].value < 0.8
    assert scores.majority.value == 0.5  # balanced: the majority rule is at chance (tie -> label 0)
    assert scores.sae[1].ci_low <= scores.sae[1].value <= scores.sae[1].ci_high


def test_probe_readouts_scores_each_mark_on_the_items_it_is_given(planted):
    model, sae, encoded = planted
    activations = forward.item_forward(model, encoded, [PLANT_HOOK]).activations[PLANT_HOOK]
    use = torch.ones(encoded.n, dtype=torch.bool)
    use[::4] = False  # a quarter of the items left out (as if the model got them wrong)
    readouts = probe_readouts(sae, activations, encoded, ["subject", "last"], use, seed=0)
    subject, last = readouts.scores["subject"], readouts.scores["last"]
    assert subject.n_train + subject.n_test == int(use.sum()) == 60
    assert subject.sae[1].value == 1.0 and subject.sae_probes[1].ranked == [0]
    # the last token ("mat") carries nothing along u: latent 0 never fires there, and the SAE probe is at chance
    assert readouts.latents[:, 1, 0].abs().sum() == 0
    assert last.sae[1].value == last.majority.value
    assert readouts.l0 == pytest.approx((1 + CARRY) / 8 / 2) and readouts.marks == ["subject", "last"]


def test_carry_curve_of_a_latent_planted_for_exactly_carry_tokens(planted):
    model, sae, encoded = planted
    activations = forward.item_forward(model, encoded, [PLANT_HOOK]).activations[PLANT_HOOK]
    index, valid = offset_index(encoded.positions["subject"], encoded.lengths, max_offset=5)
    assert valid.all()  # the noun is token 2 of 9: offsets up to 5 stay inside every item
    codes = encode_at(sae, activations, encoded.lengths, index, first_text_position=1)
    curve = carry_curve(codes.latents, valid, encoded.labels, encoded.is_train, ~encoded.is_train, k=1, seed=0)
    values = [accuracy.value for accuracy in curve.accuracies]
    # offsets 0..CARRY: the latent fires on plural items only; after: it never fires, every item reads "singular"
    assert values == [1.0] * (CARRY + 1) + [0.5] * (5 - CARRY)
    assert curve.carry_tokens == CARRY and curve.chance == 0.5 and curve.features == [0]


def test_carry_curve_on_hand_made_features_stops_where_the_signal_does():
    generator = torch.Generator().manual_seed(0)
    n, depth = 200, 4
    y = torch.arange(n) % 2
    features = torch.rand(n, 6, 3, generator=generator)
    features[:, : depth + 1, 1] += 3.0 * y[:, None]  # feature 1 carries the label at offsets 0..depth
    valid = torch.ones(n, 6, dtype=torch.bool)
    train = torch.arange(n) < n // 2
    curve = carry_curve(features, valid, y, train, ~train, k=1, seed=0)
    assert curve.carry_tokens == depth and curve.features == [1]
    assert all(a.value == 1.0 for a in curve.accuracies[: depth + 1])
    assert curve.accuracies[depth + 1].value < 0.75
    valid[:, 2] = False  # no item reaches offset 2: NaN there, and the carry stops at 1
    cut = carry_curve(features, valid, y, train, ~train, k=1, seed=0)
    assert math.isnan(cut.accuracies[2].value) and cut.carry_tokens == 1


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    correct = torch.tensor([True] * 30 + [False] * 10)
    first, second = bootstrap_accuracy(correct, seed=3), bootstrap_accuracy(correct, seed=3)
    assert first == second and first.value == 0.75 and first.n == 40
    assert first.ci_low < 0.75 < first.ci_high
    assert bootstrap_accuracy(torch.ones(5, dtype=torch.bool), seed=0).ci_low == 1.0
    assert math.isnan(bootstrap_accuracy(torch.zeros(0, dtype=torch.bool), seed=0).value)


def test_readout_without_both_labels_in_train_is_nan_not_an_error():
    x = torch.rand(10, 4)
    y = torch.zeros(10, dtype=torch.long)
    train = torch.arange(10) < 5
    scores = score_readout(x, x, None, y, train, ~train, seed=0)
    assert math.isnan(scores.sae[1].value) and math.isnan(scores.full_residual.value)
    assert scores.n_train == 5 and scores.n_test == 5
