"""Preflight flags SAEs whose numbers would be meaningless, and passes a working one."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from tsae_evals.preflight import run_preflight


def _activations(tiny_model):
    tokens = torch.randint(0, 100, (4, 24), generator=torch.Generator().manual_seed(0))
    _, cache = tiny_model.run_with_cache(tokens, names_filter=[helpers.HOOK])
    return cache[helpers.HOOK][:, 1:]


def test_working_sae_passes(tiny_model):
    report = run_preflight(helpers.tiny_sae(), _activations(tiny_model))
    assert report.status in {"pass", "warn"} and not report.problems
    assert report.probe_tokens == 4 * 23
    assert report.mean_l0 > 0


def test_zero_sae_fails(tiny_model):
    sae = helpers.tiny_sae()
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.zero_()
    report = run_preflight(sae, _activations(tiny_model))
    assert report.failed
    assert any("exactly zero" in p for p in report.problems)
    assert any("L0 = 0" in p for p in report.problems)


def test_nan_weights_fail(tiny_model):
    sae = helpers.tiny_sae()
    with torch.no_grad():
        sae.W_enc[0, 0] = float("nan")
    report = run_preflight(sae, _activations(tiny_model))
    assert report.failed and "W_enc" in report.problems[0]


def test_constant_output_fails(tiny_model):
    sae = helpers.tiny_sae()
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(1.0)  # every latent on with the same value for every token
    report = run_preflight(sae, _activations(tiny_model))
    assert report.failed and any("same vector" in p for p in report.problems)


def test_mostly_dead_latents_fail(tiny_model):
    sae = helpers.tiny_sae(d_sae=200)
    with torch.no_grad():
        sae.b_enc[1:] = -1e6  # only latent 0 can fire: 99.5% dead
        sae.b_enc[0] = 10.0
    report = run_preflight(sae, _activations(tiny_model))
    assert report.failed and any("never fire" in p for p in report.problems)
    assert report.dead_fraction == pytest.approx(199 / 200)


def test_decoder_norms_far_from_one_warn(tiny_model):
    sae = helpers.tiny_sae()
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    report = run_preflight(sae, _activations(tiny_model))
    assert report.status == "warn" and any("decoder row norm" in w for w in report.warnings)
