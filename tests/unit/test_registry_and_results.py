"""Registry behaviour and atomic, NaN-preserving result files."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import BaseModel

from tsae_evals import registry
from tsae_evals.errors import UsageError
from tsae_evals.results import write_json_atomic


def test_builtin_evals_are_registered_with_versions():
    names = {spec.name: spec for spec in registry.all_evals()}
    assert {"core", "temporal_stability"} <= names.keys()
    assert names["temporal_stability"].version >= 1 and names["temporal_stability"].group == "temporal"


def test_group_name_selects_its_evals():
    assert "temporal_stability" in [spec.name for spec in registry.parse_eval_names("temporal")]


def test_duplicate_registration_raises(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Cfg(BaseModel):
        pass

    @registry.register_eval("dup_test", version=1, config=Cfg)
    def first(ctx, cfg):
        """First."""

    with pytest.raises(ValueError, match="already registered"):

        @registry.register_eval("dup_test", version=1, config=Cfg)
        def second(ctx, cfg):
            """Second."""


def test_unknown_eval_without_close_match_points_to_list():
    with pytest.raises(UsageError, match="tsae_evals list"):
        registry.get_eval("zzzzzz")


def test_atomic_write_keeps_nan_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "core" / "x.json"
    write_json_atomic(path, {"metric": float("nan"), "ok": 1.0})
    assert math.isnan(json.loads(path.read_text())["metric"])
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"v": object.__new__(type("Unserialisable", (), {"__str__": None}))})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
