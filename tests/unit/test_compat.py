"""Workarounds for third-party packages (tsae_evals/_compat.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import sys
import torchvision  # imported first, as transformers does on GPU images
{imports}
import datasets
dataset = datasets.Dataset.from_dict({{"x": [[1, 2]]}}).with_format("torch")
print(dataset[0]["x"].tolist())
"""


@pytest.mark.parametrize("imports", ["import tsae_evals", "import datasets.config\nimport tsae_evals"])
def test_datasets_torch_format_works_beside_a_torchvision_without_video_reader(tmp_path: Path, imports: str):
    # current torchvision has no torchvision.io.VideoReader, which datasets 3.6's formatters import
    (tmp_path / "torchvision" / "io").mkdir(parents=True)
    (tmp_path / "torchvision" / "__init__.py").write_text("")
    (tmp_path / "torchvision" / "io" / "__init__.py").write_text("")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(imports=imports)],
        env={"PYTHONPATH": f"{tmp_path}:{root}", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[1, 2]"
