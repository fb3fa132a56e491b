from __future__ import annotations

import pytest

from tests import helpers


@pytest.fixture(scope="session")
def tiny_model(device):
    return helpers.tiny_model(device=device)
