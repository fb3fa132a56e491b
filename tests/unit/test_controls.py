"""The controls: plain ReLU and TopK SAEs of the shared loop; the ReLU one converts exactly to sae-lens's own
StandardSAE, so the temporal LSTM (and anyone) can start from it."""

from __future__ import annotations

import torch
from sae_lens.saes.sae import SAEMetadata

from custom_saes.controls import ControlSAE, ControlSAEConfig
from tests import helpers


def _control(activation: str, k: int = 5) -> ControlSAE:
    metadata = SAEMetadata(hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME)
    sae = ControlSAE(ControlSAEConfig(d_in=helpers.D_MODEL, d_sae=48, activation=activation, k=k, metadata=metadata))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        sae.activation_scale.fill_(2.5)
    return sae.eval()


def test_the_relu_control_is_exactly_a_standard_sae_in_raw_units():
    control = _control("relu")
    standard = control.to_standard()
    x = torch.randn(20, helpers.D_MODEL, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(standard.encode(x), control.encode(x))
        torch.testing.assert_close(standard(x), control(x))
    assert standard.cfg.architecture() == "standard"


def test_the_topk_control_keeps_exactly_k_latents():
    control = _control("topk", k=5)
    x = torch.randn(30, helpers.D_MODEL, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        active = (control.encode(x) > 0).sum(-1)
    assert int(active.max()) <= 5 and float(active.float().mean()) > 3


def test_the_temporal_lstm_starts_from_a_trained_relu_control(tiny_model, tmp_path):
    from tsae_evals.training import TrainRequest, train

    corpus = helpers.write_corpus(tmp_path / "corpus.txt", n_documents=60)
    common = dict(layer=0, tokens=512, expansion=2, context_size=32, batch_size_tokens=124, checkpoints=False)
    common.update(model=helpers.TINY_MODEL_NAME, dataset=str(corpus))
    control = train(TrainRequest(arch="control_relu", out=tmp_path / "control", **common), lambda *_: tiny_model)
    lstm = train(
        TrainRequest(arch="tsae_temporal_lstm", out=tmp_path / "lstm", options=(f"init_from={control}",), **common),
        lambda *_: tiny_model,
    )
    assert (lstm / "cfg.json").is_file()
