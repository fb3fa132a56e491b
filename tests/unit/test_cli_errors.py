"""Bad input: one line naming the problem and the fix, exit code 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tsae_evals.cli.main import main


def _run(capsys, tmp_path: Path, *args: str) -> tuple[int, str]:
    code = main(["run", "--results-dir", str(tmp_path / "results"), *args])
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_clean_error(code: int, err: str, tmp_path: Path, *needles: str) -> None:
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Fix:" in err
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "results").exists()


def test_missing_sae_directory(capsys, tmp_path):
    code, err = _run(capsys, tmp_path, "--sae", str(tmp_path / "nope"), "--evals", "core")
    _assert_clean_error(code, err, tmp_path, "does not exist")


def test_sae_directory_without_weights(capsys, tmp_path, sae_dir):
    (sae_dir / "sae_weights.safetensors").unlink()
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core")
    _assert_clean_error(code, err, tmp_path, "sae_weights.safetensors")


def test_corrupt_config(capsys, tmp_path, sae_dir):
    (sae_dir / "cfg.json").write_text("{not json")
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core")
    _assert_clean_error(code, err, tmp_path, "not valid JSON")


def test_corrupt_weights(capsys, tmp_path, sae_dir):
    (sae_dir / "sae_weights.safetensors").write_bytes(b"garbage")
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core", "--model", "tiny-unused")
    _assert_clean_error(code, err, tmp_path, "cannot load the SAE")


def test_unknown_architecture(capsys, tmp_path, sae_dir):
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    cfg["architecture"] = "standrd"
    (sae_dir / "cfg.json").write_text(json.dumps(cfg))
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core")
    _assert_clean_error(code, err, tmp_path, "unknown SAE architecture 'standrd'", "standard")


def test_unknown_eval_suggests_close_match(capsys, tmp_path, sae_dir):
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core,temporal_stabilty")
    _assert_clean_error(code, err, tmp_path, "unknown eval 'temporal_stabilty'", "temporal_stability")


def test_pretrained_release_while_offline(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = _run(capsys, tmp_path, "--sae", "gpt2-small-res-jb:blocks.8.hook_resid_pre", "--evals", "core")
    _assert_clean_error(code, err, tmp_path, "HF_HUB_OFFLINE")


def test_unknown_release(capsys, tmp_path):
    code, err = _run(capsys, tmp_path, "--sae", "gpt2-small-res-jbb:blocks.8.hook_resid_pre", "--evals", "core")
    _assert_clean_error(code, err, tmp_path, "unknown sae-lens release", "gpt2-small-res-jb")


def test_missing_dataset_file(capsys, tmp_path, sae_dir):
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core", "--dataset", str(tmp_path / "x.jsonl"))
    _assert_clean_error(code, err, tmp_path, "does not exist")


def test_unreadable_dataset_file(capsys, tmp_path, sae_dir):
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    code, err = _run(
        capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core", "--dataset", str(tmp_path / "broken.jsonl")
    )
    _assert_clean_error(code, err, tmp_path, "cannot read the dataset file", "JSONDecodeError")


def test_unknown_model(capsys, tmp_path, sae_dir):
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core", "--model", "gpt-2")
    _assert_clean_error(code, err, tmp_path, "unknown model 'gpt-2'", "gpt2")


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("run", "list", "train"))


def test_list_shows_registered_evals_with_descriptions(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "core" in out and "temporal_stability" in out and "shuffle null" in out


def _no_model(name, device):
    raise AssertionError("the model must not load for bad input")


def test_cuda_requested_without_cuda(capsys, tmp_path, sae_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core", "--device", "cuda")
    _assert_clean_error(code, err, tmp_path, "CUDA is not available", "--device cpu")


def test_unknown_device(capsys, tmp_path, sae_dir):
    code, err = _run(capsys, tmp_path, "--sae", str(sae_dir), "--evals", "core", "--device", "gpu0")
    _assert_clean_error(code, err, tmp_path, "not a torch device")


def test_results_dir_that_is_a_file(capsys, tmp_path, sae_dir, monkeypatch):
    monkeypatch.setattr("tsae_evals.models.load_model", _no_model)
    taken = tmp_path / "taken"
    taken.write_text("x")
    code = main(["run", "--results-dir", str(taken), "--sae", str(sae_dir), "--evals", "temporal_stability"])
    err = capsys.readouterr().err.strip()
    _assert_clean_error(code, err, tmp_path, "is a file, not a directory")
    assert taken.read_text() == "x"


@pytest.mark.parametrize(
    ("evals", "setting", "needle"),
    [
        ("core", [], "core needs 32 windows"),
        ("context_switch", ["--context-size", "20"], "context_switch needs at least 4 windows"),
        ("causal_interventions", ["--context-size", "40"], "runs past the window"),
        ("temporal_stability", ["--config", "temporal_stability.skip_first_positions=200"], "skip_first_positions"),
    ],
)
def test_evals_refuse_windows_they_cannot_use_before_the_model_loads(
    capsys, tmp_path, sae_dir, monkeypatch, evals, setting, needle
):
    monkeypatch.setattr("tsae_evals.models.load_model", _no_model)
    args = ["--sae", str(sae_dir), "--evals", evals, "--n-windows", "8", *setting]
    code, err = _run(capsys, tmp_path, *args)
    _assert_clean_error(code, err, tmp_path, needle)


def test_sae_lens_6_config_without_its_version_loads_with_its_metadata(tmp_path, sae_dir):
    """sae-lens would read such a file as pre-6 and drop `metadata` (hook name included)."""
    from tsae_evals.saes import load_sae, resolve_sae, sae_hook_name

    cfg = json.loads((sae_dir / "cfg.json").read_text())
    cfg.pop("sae_lens_version", None)
    cfg["metadata"].pop("sae_lens_version", None)
    (sae_dir / "cfg.json").write_text(json.dumps(cfg))
    sae = load_sae(resolve_sae(str(sae_dir)))
    assert sae_hook_name(sae) == cfg["metadata"]["hook_name"]
    assert sae.cfg.metadata.prepend_bos is True
