"""Workarounds for third-party packages, applied once when tsae_evals is imported. Each costs nothing until the
package it fixes is imported.

datasets 3.6 beside torchvision: every formatter (torch, numpy, ...) checks each value against
`torchvision.io.VideoReader` whenever torchvision is installed and already imported (transformers imports it on
most GPU images), and current torchvision has no `VideoReader`, so sae-lens's activation store and SAE-Bench's
core fail with an ImportError. We never read video, so datasets is told torchvision is absent
(`datasets.config.TORCHVISION_AVAILABLE = False`); that flag gates only video decoding in datasets 3.x.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

_DATASETS_CONFIG = "datasets.config"


def _hide_torchvision(config: ModuleType) -> None:
    config.TORCHVISION_AVAILABLE = False  # type: ignore[attr-defined]


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs `_hide_torchvision` right after `datasets.config` executes, whoever imports it first."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _DATASETS_CONFIG:
            return None
        sys.meta_path.remove(self)  # once: let the other finders locate the real module
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _hide_torchvision(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def datasets_without_torchvision() -> None:
    """Apply the datasets/torchvision workaround now if datasets is loaded, else when it loads."""
    config = sys.modules.get(_DATASETS_CONFIG)
    if config is not None:
        _hide_torchvision(config)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
