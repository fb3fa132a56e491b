from __future__ import annotations

from pathlib import Path

import pytest

from tests import helpers


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    return helpers.write_corpus(tmp_path / "corpus.txt")


@pytest.fixture
def sae_dir(tmp_path: Path) -> Path:
    return helpers.save_sae(helpers.tiny_sae(), tmp_path / "tiny_sae")
