"""The adaptive variance SAE follows its seed formulation: no encoder bias, f = ReLU(beta z / std^T - theta) with
global (beta, theta), and a std that adapts causally along the sequence."""

from __future__ import annotations

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.sae import SAEMetadata

from custom_saes.adaptive_variance import AdaptiveVarianceSAE, AdaptiveVarianceSAEConfig
from tests import helpers

D = helpers.D_MODEL
D_SAE = 24


def _sae(seed: int = 0, **overrides) -> AdaptiveVarianceSAE:
    """A random instance whose latents fire on a fair share of random inputs."""
    torch.manual_seed(seed)
    metadata = SAEMetadata(hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME)
    sae = AdaptiveVarianceSAE(AdaptiveVarianceSAEConfig(d_in=D, d_sae=D_SAE, metadata=metadata, **overrides))
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.b_dec.normal_(std=0.1)
        sae.running_variance.uniform_(0.5 * D, 2.0 * D)  # z = W_enc^T x has variance about D
        sae.beta.fill_(1.3)
        sae.theta.fill_(0.2)
        sae.activation_scale.fill_(1.5)
    return sae.eval()


def _tiny(temperature: float, clip: float = 100.0) -> AdaptiveVarianceSAE:
    """d_in = d_sae = 2, identity encoder, b_dec 0, global variance (4, 1), decay 1/2."""
    metadata = SAEMetadata(hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME)
    config = AdaptiveVarianceSAEConfig(
        d_in=2, d_sae=2, temperature=temperature, variance_decay=0.5, variance_clip=clip, metadata=metadata
    )
    sae = AdaptiveVarianceSAE(config)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.b_dec.zero_()
        sae.running_variance.copy_(torch.tensor([4.0, 1.0]))
        sae.beta.fill_(1.5)
        sae.theta.fill_(0.1)
    return sae.eval()


def test_there_is_no_per_latent_encoder_bias():
    sae = _sae()
    assert {name for name, _ in sae.named_parameters()} == {"W_enc", "W_dec", "b_dec", "beta", "theta"}
    assert sae.beta.shape == () and sae.theta.shape == ()
    # An input at the decoder bias has z = 0 for every latent: f = ReLU(-theta), the same for all of them.
    with torch.no_grad():
        sae.theta.fill_(-0.7)
        at_bias = (sae.b_dec / sae.activation_scale).expand(1, 3, D)
        torch.testing.assert_close(sae.encode(at_bias), torch.full((1, 3, D_SAE), 0.7))


@pytest.mark.parametrize("adaptation", [True, False])
def test_encode_is_causal(adaptation):
    sae, x = _sae(temporal_adaptation=adaptation), torch.randn(2, 8, D)
    changed = x.clone()
    changed[:, 5] += 3 * torch.randn(2, D)
    with torch.no_grad():
        before, after = sae.encode(x), sae.encode(changed)
    torch.testing.assert_close(after[:, :5], before[:, :5], rtol=0, atol=0)
    assert not torch.equal(after[:, 5], before[:, 5])
    assert torch.equal(after[:, 6:], before[:, 6:]) is not adaptation


@pytest.mark.parametrize("adaptation", [True, False])
def test_the_same_token_in_two_contexts(adaptation):
    sae = _sae(temporal_adaptation=adaptation)
    token = torch.randn(D)
    first, second = torch.randn(2, 6, D)
    first[-1] = second[-1] = token
    with torch.no_grad():
        codes = sae.encode(torch.stack([first, second]))[:, -1]
    assert torch.equal(codes[0], codes[1]) is not adaptation
    if adaptation:
        assert (codes[0] > 0).any() and (codes[0] - codes[1]).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        # position 0: v = (4, 1); position 1: v = (4 + 36, 1 + 1) / 2 = (20, 1). f = ReLU(1.5 z / v^(T/2) - 0.1).
        (0.0, [[1.5 * 6 - 0.1, 0.0], [1.5 * 4 - 0.1, 1.5 * 3 - 0.1]]),
        (1.0, [[1.5 * 6 / 2 - 0.1, 0.0], [1.5 * 4 / 20**0.5 - 0.1, 1.5 * 3 - 0.1]]),
        (2.0, [[1.5 * 6 / 4 - 0.1, 0.0], [1.5 * 4 / 20 - 0.1, 1.5 * 3 - 0.1]]),
    ],
)
def test_temperature_divides_by_std_to_the_temperature(temperature, expected):
    x = torch.tensor([[[6.0, -1.0], [4.0, 3.0]]])
    with torch.no_grad():
        torch.testing.assert_close(_tiny(temperature).encode(x)[0], torch.tensor(expected))


def test_one_token_adds_at_most_clip_times_the_global_variance():
    x = torch.tensor([[[6.0, -1.0], [4.0, 3.0]]])
    # Clip 2: latent 0 adds min(36, 2 * 4) = 8, so v = (4 + 8) / 2 = 6 at position 1.
    with torch.no_grad():
        torch.testing.assert_close(_tiny(2.0, clip=2.0).encode(x)[0, 1, 0], torch.tensor(1.5 * 4 / 6 - 0.1))


def test_flat_rows_are_tokens_alone_with_the_global_variance():
    sae, x = _sae(), torch.randn(5, D)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), sae.encode(x[:, None])[:, 0], rtol=0, atol=0)
        alone = _sae(temporal_adaptation=False).encode(x)
    torch.testing.assert_close(sae.encode(x), alone, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(2, 6, D), (7, D)])
def test_forward_is_decode_of_encode(shape):
    sae, x = _sae(), torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(sae(x), sae.decode(sae.encode(x)), rtol=0, atol=0)


def test_sae_lens_save_load_round_trip(tmp_path):
    sae, x = _sae(per_feature_params=True, temperature=1.5, variance_decay=0.8), torch.randn(2, 6, D)
    with torch.no_grad():
        sae.theta.uniform_(-0.5, 0.5)
    sae.save_model(tmp_path / "av")
    loaded = SAE.load_from_disk(str(tmp_path / "av")).eval()
    assert isinstance(loaded, AdaptiveVarianceSAE)
    assert (loaded.cfg.temperature, loaded.cfg.variance_decay, loaded.cfg.per_feature_params) == (1.5, 0.8, True)
    assert torch.equal(loaded.running_variance, sae.running_variance)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded(x), sae(x))


@pytest.mark.parametrize("adaptation", [True, False])
def test_training_reports_the_adaptation_share_and_seeds_the_global_variance(adaptation):
    sae = _sae(temporal_adaptation=adaptation).train()
    x = torch.randn(3, 8, D)
    x[:, 0] *= 50  # BOS-like outlier rows: not counted
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[:, 0] = False
    out = sae.training_forward(x, mask, {"l1": 1.0, "global_reg": 1.0})
    assert set(out.losses) == {"mse", "l1", "global_reg"}
    share = out.metrics["mechanism_share"]
    assert share > 0.01 if adaptation else share == 0.0
    with torch.no_grad():
        counted_pre = sae.scale_input(x[mask]) @ sae.W_enc
    torch.testing.assert_close(sae.running_variance, counted_pre.pow(2).mean(0))
