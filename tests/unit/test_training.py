"""`train` for every registered architecture on the tiny model: it trains, records provenance, saves, loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from sae_lens import SAE

from custom_saes.training.registry import register_training_architecture
from tests import helpers
from tsae_evals.errors import UsageError
from tsae_evals.training import TrainRequest, checkpoint_dir, train, training_architectures

ARCHITECTURES = sorted(training_architectures())
SAE_LENS_TRAINED = {"relu", "topk", "batchtopk"}


def _request(tmp_path: Path, arch: str, corpus: Path, **overrides) -> TrainRequest:
    fields = dict(
        arch=arch,
        layer=0,
        tokens=1024,
        out=tmp_path / arch,
        expansion=2,
        k=8,
        context_size=32,
        batch_size_tokens=256,
        model=helpers.TINY_MODEL_NAME,
        dataset=str(corpus),
    )
    fields.update(overrides)
    return TrainRequest(**fields)


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    # sae-lens's runner reads ahead several batches beyond --tokens.
    return helpers.write_corpus(tmp_path / "corpus.txt", n_documents=150)


@pytest.fixture
def static_sae(tmp_path) -> Path:
    return helpers.save_sae(helpers.tiny_sae(), tmp_path / "static")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_trains_saves_and_loads(arch, tiny_model, corpus_file, static_sae, tmp_path):
    options = (f"init_from={static_sae}",) if arch == "tsae_temporal_lstm" else ()
    out = train(_request(tmp_path, arch, corpus_file, options=options), model_loader=lambda *_: tiny_model)
    sae = SAE.load_from_disk(str(out)).eval()
    metadata = sae.cfg.metadata
    assert metadata.tsae_arch == arch and metadata.training_seed == 0 and metadata.hook_name == helpers.HOOK
    x = torch.randn(2, 5, helpers.D_MODEL)
    with torch.no_grad():
        assert torch.isfinite(sae(x)).all()
    if arch.startswith("tsae_"):
        phases = [row["phase"] for row in metadata.training_log]
        assert phases and all("L0" in row and "EV" in row for row in metadata.training_log)
        checkpoints = sorted(p.name for p in checkpoint_dir(out).iterdir())
        assert checkpoints and checkpoints[-1].endswith(phases[-1])
    if arch in SAE_LENS_TRAINED:
        assert list(checkpoint_dir(out).glob("*/*/cfg.json")), "sae-lens's trainer saved no checkpoint"


def test_phased_training_lowers_the_reconstruction_error(tiny_model, corpus_file, tmp_path):
    out = train(
        _request(tmp_path, "control_relu", corpus_file, tokens=8192, lr=3e-3, l1_coefficient=0.1),
        model_loader=lambda *_: tiny_model,
    )
    log = SAE.load_from_disk(str(out)).cfg.metadata.training_log
    assert log[-1]["mse"] < 0.7 * log[0]["mse"], log


def test_pca_with_every_component_is_the_identity(tiny_model, corpus_file, tmp_path):
    sae = SAE.load_from_disk(str(train(_request(tmp_path, "pca", corpus_file), model_loader=lambda *_: tiny_model)))
    x = torch.randn(16, helpers.D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(sae(x), x, rtol=1e-4, atol=1e-4)
        assert ((sae.encode(x) > 0).sum(-1) <= helpers.D_MODEL).all()  # one of each +/- pair at most


def test_random_baseline_matches_the_width_and_l0_of_a_reference(tiny_model, corpus_file, static_sae, tmp_path):
    request = _request(tmp_path, "random", corpus_file, options=(f"match={static_sae}",))
    sae = SAE.load_from_disk(str(train(request, model_loader=lambda *_: tiny_model)))
    reference = SAE.load_from_disk(str(static_sae))
    x = torch.randn(64, helpers.D_MODEL)
    with torch.no_grad():
        assert sae.cfg.d_sae == reference.cfg.d_sae
        assert (sae.encode(x) > 0).sum(-1).float().mean().item() == sae.cfg.k


@pytest.mark.parametrize(
    ("arch", "options", "message"),
    [
        ("tsae_temporal_lstm", (), "starts from a pretrained static SAE"),
        ("tsae_hierarchical", ("beta1=9", "beta2=1"), "beta1 (9.0) must be below beta2"),
        ("tsae_t_sae", ("window=3",), "Extra inputs are not permitted"),
        ("tsae_t_sae", ("temperature",), "malformed --set"),
        ("tsae_heirarchical", (), "did you mean tsae_hierarchical"),
    ],
)
def test_bad_training_settings_are_usage_errors(arch, options, message, tiny_model, corpus_file, tmp_path):
    with pytest.raises(UsageError, match=re.escape(message)):
        train(_request(tmp_path, arch, corpus_file, options=options), model_loader=lambda *_: tiny_model)


def test_registering_a_taken_architecture_name_raises():
    with pytest.raises(ValueError, match="'relu' is already registered"):
        register_training_architecture("relu")(lambda job, options: None)
    assert training_architectures()["relu"].trainer.__module__ == "tsae_evals.training.sae_lens_recipes"
