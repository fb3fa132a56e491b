"""The sae-lens contract, checked for every registered `tsae_` architecture the moment it registers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from sae_lens.registry import get_sae_class
from sae_lens.saes.sae import SAEMetadata

import custom_saes  # noqa: F401
from custom_saes.base import iter_registered
from tests import helpers
from tsae_evals.runner import RunRequest, run

ARCHITECTURES = [name for name, _ in iter_registered()]
D_SAE = 64
FAST_CORE = [
    "core.batch_size_prompts=2",
    "core.n_eval_reconstruction_batches=1",
    "core.n_eval_sparsity_variance_batches=2",
]


def test_every_architecture_module_registered_one():
    assert len(ARCHITECTURES) == 7, ARCHITECTURES  # six architectures and the shared control class


def build(architecture: str, seed: int = 0) -> Any:
    """An instance with every parameter random (zero-initialised paths included) and a non-trivial input scale."""
    sae_class, config_class = get_sae_class(architecture)
    metadata = SAEMetadata(
        hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME, context_size=32, prepend_bos=True
    )
    sae = sae_class(config_class(d_in=helpers.D_MODEL, d_sae=D_SAE, metadata=metadata))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sae.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(noise / math.sqrt(parameter.shape[0]) if parameter.dim() > 1 else 0.1 * noise)
            if name in ("beta",):
                parameter.abs_().add_(0.5)
        sae.activation_scale.fill_(1.7)
        if hasattr(sae, "threshold"):
            sae.threshold.fill_(0.05)
    return sae.eval()


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, 7, helpers.D_MODEL, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    torch.save(inputs(), root / "x.pt")
    paths = {}
    for architecture in ARCHITECTURES:
        paths[architecture] = root / architecture
        build(architecture).save_model(paths[architecture])
    return paths


@pytest.fixture(scope="module")
def fresh_process_outputs(saved) -> dict[str, dict[str, torch.Tensor]]:
    """Load every saved SAE in one new interpreter (only `import custom_saes` first) and record its outputs."""
    root = next(iter(saved.values())).parent
    script = f"""
import torch, custom_saes
from sae_lens import SAE
x = torch.load({str(root / "x.pt")!r})
out = {{}}
for name in {list(saved)!r}:
    sae = SAE.load_from_disk({str(root)!r} + "/" + name).eval()
    with torch.no_grad():
        out[name] = {{"encode": sae.encode(x), "forward": sae(x)}}
torch.save(out, {str(root / "fresh.pt")!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return torch.load(root / "fresh.pt")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_save_then_load_in_a_fresh_process_gives_identical_outputs(architecture, fresh_process_outputs):
    sae, x = build(architecture), inputs()
    with torch.no_grad():
        assert torch.equal(fresh_process_outputs[architecture]["encode"], sae.encode(x))
        assert torch.equal(fresh_process_outputs[architecture]["forward"], sae(x))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saved_config_names_the_architecture_and_hook(architecture, saved):
    cfg = json.loads((saved[architecture] / "cfg.json").read_text())
    assert cfg["architecture"] == architecture and architecture.startswith("tsae_")
    assert cfg["metadata"]["hook_name"] == helpers.HOOK


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_shapes_for_flat_and_sequence_input(architecture):
    sae, x = build(architecture), inputs()
    with torch.no_grad():
        assert sae.encode(x).shape == (3, 7, D_SAE)
        assert sae(x).shape == x.shape
        flat = x.reshape(-1, helpers.D_MODEL)
        assert sae.encode(flat).shape == (21, D_SAE)
        assert sae(flat).shape == flat.shape
        assert sae.decode(sae.encode(flat)).shape == flat.shape


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_is_decode_of_encode(architecture):
    sae, x = build(architecture), inputs()
    with torch.no_grad():
        torch.testing.assert_close(sae(x), sae.decode(sae.encode(x)), rtol=0, atol=0)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_flattened_input_means_what_the_class_declares(architecture):
    sae, x = build(architecture), inputs()
    flat = x.reshape(-1, helpers.D_MODEL)
    with torch.no_grad():
        if sae.flat_input == "each_token_alone":
            expected = sae.encode(flat[:, None, :])[:, 0]
        else:
            expected = sae.encode(x).reshape(-1, D_SAE)
        torch.testing.assert_close(sae.encode(flat), expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_context_is_causal_and_only_declared_classes_use_it(architecture):
    sae, x = build(architecture), inputs()
    changed = x.clone()
    changed[:, 4:] += torch.randn_like(changed[:, 4:])
    earlier = x.clone()
    earlier[:, :3] += torch.randn_like(earlier[:, :3])
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(changed)[:, :4], sae.encode(x)[:, :4])
        depends_on_past = not torch.allclose(sae.encode(earlier)[:, 3:], sae.encode(x)[:, 3:])
    assert depends_on_past == sae.sequence_aware


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saebench_core_runs_unchanged(architecture, saved, tiny_model, tmp_path, device):
    corpus = helpers.write_corpus(tmp_path / "corpus.txt")
    request = RunRequest(
        sae_specs=[str(saved[architecture])],
        eval_names="core",
        dataset=str(corpus),
        n_windows=8,
        context_size=32,
        batch_size=4,
        results_dir=tmp_path / "results",
        config_overrides=FAST_CORE,
        allow_degenerate=True,
        device=device,
    )
    outcome = run(request, model_loader=lambda name, device: tiny_model)[0]
    assert outcome.status == "ok", outcome.message
    record = json.loads(outcome.path.read_text())
    assert record["sae_cfg_dict"]["architecture"] == architecture
    l0 = record["eval_result_metrics"]["sparsity"]["l0"]
    assert 0 < l0 <= D_SAE
