"""SAE-Bench's core eval (reconstruction, KL/CE loss recovered, shrinkage, sparsity, feature density), unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsae_evals.evals.core.config import CoreConfig
from tsae_evals.evals.core.result import CoreResult
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext


@register_eval("core", version=1, config=CoreConfig)
def core(ctx: EvalContext, cfg: CoreConfig) -> CoreResult:
    """SAE-Bench core: reconstruction, KL/CE loss recovered, shrinkage, sparsity and feature density."""
    from tsae_evals.evals.saebench.core import run_core

    return run_core(ctx, cfg)
