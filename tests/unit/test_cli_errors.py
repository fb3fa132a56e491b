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
