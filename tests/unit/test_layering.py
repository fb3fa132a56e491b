"""One dependency direction: tsae_evals (the application) imports custom_saes (the library), never the reverse."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CUSTOM_SAES = Path(__file__).resolve().parents[2] / "custom_saes"


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CUSTOM_SAES.rglob("*.py")), ids=lambda p: str(p.relative_to(CUSTOM_SAES)))
def test_no_custom_saes_file_imports_tsae_evals(path):
    # ast.walk reaches imports inside functions and under TYPE_CHECKING too: no lazy back edge either.
    imported = _imported_modules(ast.parse(path.read_text(), filename=str(path)))
    assert not [name for name in imported if name.split(".")[0] == "tsae_evals"]


def test_importing_custom_saes_loads_no_tsae_evals_module():
    check = (
        "import sys, custom_saes\n"
        "loaded = [m for m in sys.modules if m == 'tsae_evals' or m.startswith('tsae_evals.')]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=CUSTOM_SAES.parent)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("first", ["tsae_evals.training", "custom_saes"])
def test_either_package_imports_first_without_a_cycle(first):
    check = f"import {first}, tsae_evals.training, custom_saes; assert 'relu' in tsae_evals.training.training_architectures()"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=CUSTOM_SAES.parent)
    assert result.returncode == 0, result.stderr
