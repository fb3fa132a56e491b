"""SAE-Bench core's SAE-independent forwards, run once per run: the same numbers, fewer forwards."""

from __future__ import annotations

import json

import pytest
import torch

from tests import helpers
from tsae_evals.evals.saebench.core import shared_forwards
from tsae_evals.evals.saebench.core.shared_forwards import SharedForwards
from tsae_evals.results import read_record
from tsae_evals.runner import run

BATCHES = 2
"""Reconstruction and sparsity batches of the core runs below."""


def _core_on_two_saes(tmp_path, device, model):
    request = helpers.two_tiny_saes_request(
        tmp_path,
        "core",
        [
            "core.batch_size_prompts=4",
            f"core.n_eval_reconstruction_batches={BATCHES}",
            f"core.n_eval_sparsity_variance_batches={BATCHES}",
        ],
        device=device,
    )
    outcomes = run(request, model_loader=lambda *_: model)
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.message for o in outcomes]
    return [read_record(o.path) for o in outcomes if o.path is not None]


class _Scope:
    """Stands in for a run's windows, whose lifetime the memory shares."""


def _counting_forwards(model):
    calls = []
    forward = model.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    model.forward = counted
    return calls


def test_core_on_two_saes_gives_the_same_bits_with_one_set_of_shared_forwards(tmp_path, device, monkeypatch):
    shared_model = helpers.tiny_model(n_ctx=32, device=device)
    shared_calls = _counting_forwards(shared_model)
    shared = _core_on_two_saes(tmp_path / "shared", device, shared_model)

    monkeypatch.setattr(shared_forwards, "DEFAULT_BUDGET_BYTES", 0)  # nothing fits: every forward runs
    alone_model = helpers.tiny_model(n_ctx=32, device=device)
    alone_calls = _counting_forwards(alone_model)
    alone = _core_on_two_saes(tmp_path / "alone", device, alone_model)

    # SAE-Bench per SAE: clean, spliced and zero-ablated forwards per reconstruction batch, one to the hook per
    # sparsity batch; with the memory the second SAE runs only its spliced ones. (The preflight's forwards come on
    # top, the same for both.)
    per_sae = 3 * BATCHES + BATCHES
    assert len(alone_calls) - len(shared_calls) == per_sae - BATCHES
    for with_memory, without in zip(shared, alone, strict=True):
        # NaN-safe bit-for-bit: the JSON text of every metric and per-latent detail
        assert json.dumps(with_memory.eval_result_metrics) == json.dumps(without.eval_result_metrics)
        assert json.dumps(with_memory.eval_result_details) == json.dumps(without.eval_result_details)


def test_a_remembered_forward_is_handed_out_as_a_copy(device):
    model = helpers.tiny_model(n_ctx=32, device=device)
    view = SharedForwards(model, scope=_Scope())
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 16), device=device)
    with torch.no_grad():
        expected = model(tokens, return_type="both", loss_per_token=True)
        first = view(tokens, return_type="both", loss_per_token=True)
        first[0].zero_()  # SAE-Bench may change what it gets in place
        second = view(tokens, return_type="both", loss_per_token=True)
    assert torch.equal(second[0], expected[0]) and torch.equal(second[1], expected[1])
    assert second[0].data_ptr() != first[0].data_ptr()


def test_forwards_that_depend_on_more_than_the_tokens_always_run(device):
    model = helpers.tiny_model(n_ctx=32, device=device)
    calls = _counting_forwards(model)
    scope = _Scope()  # the memory lives as long as this (a run's windows, in a run)
    view = SharedForwards(model, scope=scope)
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 16), device=device)

    def doubled(activations, hook):
        return activations * 2

    with torch.no_grad():
        view(tokens, return_type="loss")
        view(tokens, return_type="loss")
        assert len(calls) == 1
        view(tokens.flip(0), return_type="loss")  # other tokens
        view(tokens, return_type="logits")  # other arguments
        assert len(calls) == 3
        for _ in range(2):  # a hook that is not SAE-Bench's zero ablation
            view.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(helpers.HOOK, doubled)])
        assert len(calls) == 5
        with model.hooks(fwd_hooks=[(helpers.HOOK, doubled)]):  # a hook left on the model
            view(tokens, return_type="loss")
        assert len(calls) == 6
    view(tokens, return_type="loss")  # grad mode on: outputs would carry a graph
    assert len(calls) == 7
    with torch.no_grad():
        torch.nn.init.zeros_(model.W_U)  # changed weights (in place)
        assert view(tokens, return_type="loss").item() == pytest.approx(
            torch.log(torch.tensor(float(model.cfg.d_vocab))).item()
        )
    assert len(calls) == 8
