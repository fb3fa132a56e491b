"""sweep --executor ray: the same sweep as Ray tasks on a local two-worker instance gives the same table."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from tests import helpers
from tsae_evals.errors import UsageError
from tsae_evals.sweep import SweepRequest, run_sweep

ray = pytest.importorskip("ray")
REPOSITORY = Path(__file__).parents[2]


def _recipe(tmp_path: Path) -> Path:
    return helpers.sweep_recipe(
        tmp_path,
        helpers.write_corpus(tmp_path / "corpus.txt", n_documents=80),
        name="tiny_ray",
        variants=[
            {"name": "control", "arch": "control_relu"},
            {"name": "consistency", "arch": "tsae_temporal_consistency", "set": {"window_size": 2}},
            {"name": "lstm", "arch": "tsae_temporal_lstm", "set": {"init_from": "@control"}},
        ],
        evals=["temporal_stability", "feature_lifetimes"],
        metrics=[],
    )


def _table(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray's tasks run on one thread each: the local run matches them bit for bit
    yield
    torch.set_num_threads(threads)


def test_a_ray_sweep_gives_the_local_sweeps_table(tmp_path, one_thread):
    recipe = _recipe(tmp_path)
    local = run_sweep(SweepRequest(recipe_path=recipe, out=tmp_path / "local"), model_loader=helpers.tiny_model_loader)
    env = {
        "PYTHONPATH": str(REPOSITORY),
        "TSAE_EVALS_THREADS": "1",
        "TSAE_EVALS_ACTIVATION_CACHE": os.environ["TSAE_EVALS_ACTIVATION_CACHE"],
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        distributed = run_sweep(
            SweepRequest(recipe_path=recipe, out=tmp_path / "ray", executor="ray"),
            model_loader=helpers.tiny_model_loader,
        )
        # The LSTM's training task waited for its control's: it started from that SAE.
        lstm = json.loads((tmp_path / "ray" / "saes" / "lstm-s0" / "cfg.json").read_text())
        assert str(tmp_path / "ray" / "saes" / "control-s0") in json.dumps(lstm)
    finally:
        ray.shutdown()
    assert {o.status for o in distributed.outcomes} == {"ok"} and len(distributed.outcomes) == 3 * 2 * 2
    assert _table(distributed.table_csv) == _table(local.table_csv)
    assert len(_table(local.table_csv)) > 3


def test_without_a_cluster_the_ray_executor_refuses_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    request = SweepRequest(recipe_path=_recipe(tmp_path), out=tmp_path / "ray", executor="ray")
    with pytest.raises(UsageError, match="no Ray cluster"):
        run_sweep(request, model_loader=helpers.tiny_model_loader)
    assert not (tmp_path / "ray" / "saes").exists()
