"""Shared fixtures; slow tests (SmolLM2) run only with --run-slow; `--device cuda` runs the model-backed tests on a
GPU (the default, cpu, is what CI runs)."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the SmolLM2 integration tests")
    parser.addoption("--device", default="cpu", help="torch device of the test models and runs (default: cpu)")


@pytest.fixture(scope="session", autouse=True)
def _private_activation_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Training tests write their activation caches into a fresh folder, never the user's cache."""
    os.environ["TSAE_EVALS_ACTIVATION_CACHE"] = str(tmp_path_factory.mktemp("activations"))


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> str:
    """The `--device` option: where fixtures put models and where tests ask the runner to run."""
    return str(request.config.getoption("--device"))


@pytest.fixture(scope="session")
def tiny_model(device: str):
    from tests import helpers

    return helpers.tiny_model(device=device)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
