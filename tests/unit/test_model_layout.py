"""The weight layout `load_model` stores (models.matmul_ready_layout): the same numbers to the bit, faster."""

from __future__ import annotations

import pytest
import torch

from tsae_evals.models import matmul_ready_layout


def _model(gated: bool, n_key_value_heads: int | None):
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=32,
        n_heads=4,
        d_head=8,
        d_mlp=64,
        n_ctx=16,
        d_vocab=50,
        act_fn="silu" if gated else "gelu",
        gated_mlp=gated,
        n_key_value_heads=n_key_value_heads,
        normalization_type="RMS" if gated else "LN",
        positional_embedding_type="rotary" if gated else "standard",
        device="cpu",
    )
    model = HookedSAETransformer(cfg).eval()
    # Random weights everywhere (TransformerLens zeroes some biases), so every matmul's rounding is exercised.
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize(("gated", "kv_heads"), [(True, 2), (True, None), (False, None)])
def test_outputs_and_cached_activations_are_bit_identical_after_relayout(gated, kv_heads):
    model = _model(gated, kv_heads)
    tokens = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
        before = {name: param.clone() for name, param in model.named_parameters()}
        matmul_ready_layout(model)
        relaid_logits, relaid_cache = model.run_with_cache(tokens)
    assert torch.equal(relaid_logits, logits)
    assert all(torch.equal(relaid_cache[name], cache[name]) for name in cache)
    for name, param in model.named_parameters():
        assert param.shape == before[name].shape and torch.equal(param, before[name]), name


def test_only_the_weights_transformerlens_copies_per_forward_change_layout():
    gated, plain = matmul_ready_layout(_model(True, 2)), matmul_ready_layout(_model(False, None))
    moved = {name for name, param in gated.named_parameters() if not param.is_contiguous()}
    assert {"unembed.W_U", "blocks.0.mlp.W_gate", "blocks.0.mlp.W_in", "blocks.0.mlp.W_out"} <= moved
    assert {"blocks.0.attn.W_Q", "blocks.0.attn.W_O"} <= moved
    assert "blocks.0.attn._W_K" not in moved  # expanded per forward anyway
    # the plain MLP multiplies its weights as stored: a new layout could change its rounding, so it keeps its own
    assert all(plain.get_parameter(f"blocks.{i}.mlp.{w}").is_contiguous() for i in (0, 1) for w in ("W_in", "W_out"))
    # after relayout the per-forward copy is free: the transposed weight already is contiguous
    assert gated.blocks[0].mlp.W_gate.T.is_contiguous() and gated.unembed.W_U.T.is_contiguous()


def test_a_local_hf_directory_loads_the_same_weights_as_transformer_lens_key_by_key(tmp_path, monkeypatch):
    """`load_model` gathers TransformerLens's key-by-key state-dict loads into one: the same weights to the bit."""
    import contextlib

    from transformers import LlamaConfig, LlamaForCausalLM

    from tests import helpers
    from tsae_evals import models

    tokenizer = helpers.tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    at_once = models.load_model(str(tmp_path))
    monkeypatch.setattr(models, "state_dict_loaded_at_once", lambda model: contextlib.nullcontext())
    key_by_key = models.load_model(str(tmp_path))
    ours, theirs = at_once.state_dict(), key_by_key.state_dict()
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        assert torch.equal(value, theirs[name]), name
    # and not merely both left at their initialisation
    assert torch.equal(at_once.W_E, LlamaForCausalLM.from_pretrained(tmp_path).model.embed_tokens.weight)
