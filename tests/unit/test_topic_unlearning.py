"""topic_unlearning_standin: the splice preserves the model, the generic clamp, the selection rule, the matched
null, the strategies per SAE kind, and refusals of bad settings before any model loads."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests import helpers
from tsae_evals.context import EvalContext, RunShape
from tsae_evals.errors import UsageError
from tsae_evals.evals.topic_unlearning.config import TopicUnlearningConfig
from tsae_evals.evals.topic_unlearning.data import cut_windows, topic_windows
from tsae_evals.evals.topic_unlearning.eval import check, topic_unlearning_standin
from tsae_evals.evals.topic_unlearning.interventions import clamp_latents, reconstruction_change, score_windows
from tsae_evals.evals.topic_unlearning.selection import bootstrap_difference, matched_null, select_latents
from tsae_evals.runner import RunRequest, run

CONTEXT = 48
SMALL = {"n_selection_windows": 8, "n_eval_windows": 4, "n_bootstrap": 200}


def _context(model, sae, hook: str = helpers.HOOK) -> EvalContext:
    return helpers.eval_context(model, sae, CONTEXT, hook)


def _identity_sae(d: int = 4):
    """latents = relu(x), reconstruction = latents: every edit can be worked out by hand."""
    sae = helpers.tiny_sae(d_sae=d, d_in=d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
        sae.b_enc.zero_()
    return sae


def test_generic_clamp_sets_exactly_the_chosen_latents_where_they_fire():
    latents = torch.tensor([[[0.0, 2.0, 0.0, 1.0], [3.0, 0.0, 0.5, 0.0]]])
    edited = clamp_latents(latents, [1, 2], -7.0)
    expected = torch.tensor([[[0.0, -7.0, 0.0, 1.0], [3.0, 0.0, -7.0, 0.0]]])
    assert torch.equal(edited, expected)
    assert torch.equal(latents[0, 0], torch.tensor([0.0, 2.0, 0.0, 1.0]))  # the input is not modified


def test_reconstruction_change_of_the_clamp_on_a_hand_built_sae():
    sae = _identity_sae()
    x = torch.tensor([[[1.0, 2.0, -1.0, 0.5], [0.3, 4.0, 2.0, -2.0], [0.0, -1.0, 3.0, 1.0]]])
    change = reconstruction_change(sae, x, [1], -3.0, "clamp", first_text_position=1)
    expected = torch.zeros_like(x)
    expected[0, 1, 1] = -3.0 - 4.0  # position 1 fires (4): set to -3; position 2 does not fire; BOS untouched
    assert torch.allclose(change, expected)
    # a chosen latent that never fires is a no-op: exactly zero, not merely small
    assert torch.equal(reconstruction_change(sae, -x.abs(), [0, 1], -3.0, "clamp", 1), torch.zeros_like(x))
    with pytest.raises(ValueError, match="intervene"):
        reconstruction_change(sae, x, [1], -3.0, "pattern", 1)


def test_splice_is_the_edited_reconstruction_plus_the_error_term_and_a_zero_edit_changes_nothing(tiny_model):
    sae = helpers.tiny_sae().to(tiny_model.cfg.device)
    tokens = torch.randint(4, 100, (3, CONTEXT), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = tiny_model.tokenizer.bos_token_id
    tokens = tokens.to(tiny_model.cfg.device)
    untouched = score_windows(tiny_model, tokens, helpers.HOOK, None, 1)
    zero = score_windows(tiny_model, tokens, helpers.HOOK, torch.zeros(3, CONTEXT, helpers.D_MODEL), 1)
    assert torch.equal(untouched.loss, zero.loss) and torch.equal(untouched.accuracy, zero.accuracy)

    # The same run written the other way: replace the activations by decode(f') + (x - decode(f)).
    _, cache = tiny_model.run_with_cache(tokens, names_filter=[helpers.HOOK])
    x = cache[helpers.HOOK]
    with torch.no_grad():
        latents = sae.encode(x)
        chosen = latents[:, 1:].gt(0).float().sum((0, 1)).topk(3).indices.tolist()
        edited = clamp_latents(latents, chosen, -4.0)
        edited[:, 0] = latents[:, 0]
        replacement = sae.decode(edited) + (x - sae.decode(latents))
        logits = tiny_model.run_with_hooks(tokens, fwd_hooks=[(helpers.HOOK, lambda act, hook: replacement)])
    expected_loss = torch.nn.functional.cross_entropy(
        logits[:, 1:-1].flatten(0, 1), tokens[:, 2:].flatten(), reduction="none"
    ).view(3, -1)
    change = reconstruction_change(sae, x, chosen, -4.0, "clamp", 1)
    spliced = score_windows(tiny_model, tokens, helpers.HOOK, change, 1)
    assert torch.allclose(spliced.loss, expected_loss.mean(1).cpu(), atol=1e-5)
    assert not torch.allclose(spliced.loss, untouched.loss)


def test_selection_rule_and_matched_null():
    forget = torch.tensor([0.30, 0.50, 0.00, 0.20, 0.005, 0.10, 0.30])
    retain = torch.tensor([0.00, 0.20, 0.00, 0.001, 0.00, 0.009, 0.00])
    # latent 1 fires most on forget text but too often on retain text; 2 never fires; ties keep index order
    assert select_latents(forget, retain, 3, 0.01) == [0, 6, 3]
    assert select_latents(forget, retain, 10, 0.01) == [0, 6, 3, 5, 4]
    assert select_latents(forget, retain, 0, 0.01) == []
    pooled = torch.tensor([0.1, 0.0, 0.5, 0.11, 0.09, 0.3, 0.0, 0.52])
    null = matched_null(pooled, [0, 2], n_candidates=1, seed=0)
    assert null == [3, 7]  # nearest in log rate to 0.1 and to 0.5 (dead latents 1 and 6 never drawn)
    wide = matched_null(pooled, [0, 2], n_candidates=3, seed=0)
    assert len(set(wide)) == 2 and not set(wide) & {0, 1, 2, 6}
    assert wide == matched_null(pooled, [0, 2], n_candidates=3, seed=0)


def test_bootstrap_interval_of_a_constant_difference_is_that_difference():
    low, high = bootstrap_difference(torch.full((5,), 2.0), torch.full((7,), 0.5), 200, 0.9, seed=0)
    assert low == pytest.approx(1.5) and high == pytest.approx(1.5)
    low, high = bootstrap_difference(torch.arange(10.0), torch.zeros(10), 500, 0.9, seed=0)
    assert low < 4.5 < high


def test_windows_take_one_document_each_and_selection_never_shares_a_document(tiny_model):
    tokenizer = tiny_model.tokenizer
    words = ["cat", "dogs", "birds", "rivers", "trains", "boats"]
    texts = [" ".join([word] * 60) for word in words]
    texts.insert(2, "cat sat")  # too short for a window: skipped, never padded
    selection, held_out = cut_windows(
        tokenizer, texts, n_selection=2, n_eval=3, context_size=20, prepend_bos=True, seed=0, label="forget"
    )

    def words_in(rows: list[list[int]]) -> list[set[str]]:
        return [set(tokenizer.decode(row[1:]).split()) for row in rows]

    assert words_in(selection) == [{"cat"}, {"dogs"}]
    assert words_in(held_out) == [{"birds"}, {"rivers"}, {"trains"}]
    assert all(len(row) == 20 and row[0] == tokenizer.bos_token_id for row in selection + held_out)
    with pytest.raises(UsageError, match="only 6 forget documents"):
        cut_windows(
            tokenizer, texts, n_selection=4, n_eval=3, context_size=20, prepend_bos=True, seed=0, label="forget"
        )


def _token_detector_sae(model, forget_token: int, shared_token: int):
    """An SAE on `hook_embed` with two alive latents: 3 fires exactly on `forget_token`, 5 on `shared_token`."""
    embed = model.W_E.detach().cpu()
    sae = helpers.tiny_sae(d_sae=8, hook_name="hook_embed")
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(-1e4)
        for latent, token in ((3, forget_token), (5, shared_token)):
            direction = embed[token] / embed[token].norm()
            others = torch.cat([embed[:token], embed[token + 1 :]]) @ direction
            assert others.max() < embed[token].norm()  # the token is the only one this far along its direction
            sae.W_enc[:, latent] = direction
            sae.b_enc[latent] = -(others.max() + embed[token].norm()) / 2
    return sae


def test_selection_picks_the_latent_built_to_fire_only_on_forget_text(tiny_model):
    cfg = TopicUnlearningConfig(n_bootstrap=200)
    windows, _ = topic_windows(tiny_model.tokenizer, cfg, context_size=CONTEXT, prepend_bos=True, seed=0)
    forget, retain = windows.selection_forget[:, 1:].flatten(), windows.selection_retain[:, 1:].flatten()
    only_forget = [t for t in forget.unique().tolist() if t not in set(retain.tolist())]
    shared = [t for t in forget.unique().tolist() if (retain == t).float().mean() > 0.02 and t != 0]
    assert only_forget and shared
    forget_token = max(only_forget, key=lambda t: int((forget == t).sum()))
    shared_token = max(shared, key=lambda t: int((forget == t).sum()))
    assert (forget == shared_token).float().mean() > (forget == forget_token).float().mean()

    sae = _token_detector_sae(tiny_model, forget_token, shared_token)
    result = topic_unlearning_standin(_context(tiny_model, sae, hook="hook_embed"), cfg)
    chosen = [row for row in result.latents if row.role == "chosen"]
    assert [row.latent for row in chosen] == [3]  # latent 5 fires more on forget text, but also on retain text
    assert chosen[0].forget_rate == pytest.approx(float((forget == forget_token).float().mean()))
    assert chosen[0].retain_rate == 0.0
    assert [row.latent for row in result.latents if row.role == "null"] == [5]  # the only other alive latent
    assert result.metrics.selection.clamp_value < 0


def test_no_latents_means_exactly_no_change(tiny_model):
    result = topic_unlearning_standin(
        _context(tiny_model, helpers.tiny_sae()), TopicUnlearningConfig(n_latents=0, **SMALL)
    )
    clamp = result.metrics.clamp
    assert result.metrics.selection.n_latents == 0
    assert clamp.delta_loss_forget == 0.0 and clamp.delta_loss_retain == 0.0 and clamp.selectivity == 0.0
    assert clamp.delta_accuracy_forget == 0.0 and clamp.null_selectivity == 0.0


def test_pattern_and_hybrid_are_nan_for_a_plain_sae_and_computed_for_a_temporal_context_sae(tiny_model):
    from tests.contract.test_architectures import build

    cfg = TopicUnlearningConfig(retain_threshold=1.0, **SMALL)  # any latent more frequent on forget text qualifies
    plain = topic_unlearning_standin(_context(tiny_model, helpers.tiny_sae()), cfg)
    assert plain.strategies_run == ["clamp"]
    assert plain.metrics.selection.n_latents > 0
    assert math.isfinite(plain.metrics.clamp.selectivity) and plain.metrics.clamp.delta_loss_forget != 0
    for strategy in ("pattern", "hybrid"):
        assert all(math.isnan(v) for v in getattr(plain.metrics, strategy).model_dump().values())

    context = topic_unlearning_standin(_context(tiny_model, build("tsae_temporal_context")), cfg)
    assert context.strategies_run == ["clamp", "pattern", "hybrid"]
    for strategy in ("clamp", "pattern", "hybrid"):
        values = getattr(context.metrics, strategy).model_dump()
        assert all(math.isfinite(v) for v in values.values()), strategy
        assert values["selectivity_ci_low"] <= values["selectivity"] <= values["selectivity_ci_high"]
    # pattern edits where the context drives a latent, clamp where it fires: not the same edit
    assert context.metrics.pattern.delta_loss_forget != context.metrics.clamp.delta_loss_forget


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dataset": "wmdp_bio"}, "unknown topic set 'wmdp_bio'"),
        ({"forget_class": "Pythn"}, "did you mean Python"),
        ({"retain_classes": ["C", "Python"]}, "both forgotten and retained"),
        ({"dataset": "ag_news", "forget_class": "Python"}, "unknown class of ag_news 'Python'"),
        ({"n_selection_windows": 1500, "n_eval_windows": 600}, "fewer than the 2100 windows"),
    ],
)
def test_bad_settings_are_refused_by_check(overrides, message):
    with pytest.raises(UsageError) as refused:
        check(RunShape(8, 128, True), TopicUnlearningConfig(**overrides))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_run_refuses_bad_settings_before_loading_a_model_and_writes_a_labelled_record(
    tiny_model, sae_dir, corpus_file, tmp_path, device
):
    def never(name, device):
        raise AssertionError("the model loaded before the config was refused")

    def request(*settings: str) -> RunRequest:
        return RunRequest(
            sae_specs=[str(sae_dir)],
            eval_names="topic_unlearning_standin",
            dataset=str(corpus_file),
            n_windows=4,
            context_size=CONTEXT,
            results_dir=tmp_path,
            device=device,
            allow_degenerate=True,
            config_overrides=[f"topic_unlearning_standin.{s}" for s in settings],
        )

    with pytest.raises(UsageError, match="forget_class"):
        run(request("forget_class=Rust"), model_loader=never)
    smaller = [f"{key}={value}" for key, value in SMALL.items()]
    outcome = run(request(*smaller), model_loader=lambda *_: tiny_model)[0]
    assert outcome.status == "ok", outcome.message
    record = json.loads(outcome.path.read_text())
    info = record["metric_info"]
    assert info["clamp.selectivity"]["label"] == "clamp_selectivity" and info["clamp.selectivity"]["headline"]
    assert info["hybrid.selectivity_over_null"]["label"] == "hybrid_sel_over_null"
    assert "not WMDP" in info["clamp.selectivity"]["description"]
    assert record["eval_result_unstructured"]["strategies_run"] == ["clamp"]
    assert "not WMDP" in record["eval_result_unstructured"]["note"]
