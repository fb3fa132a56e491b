"""Hierarchy: the hierarchical SAE's two levels, how much the upper level's firing tells about the lower's, and
whether the groups of lower latents it forms beat k-means and random groupings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsae_evals.errors import Unavailable
from tsae_evals.evals.hierarchy.config import HierarchyConfig
from tsae_evals.registry import register_streaming_eval

if TYPE_CHECKING:
    from tsae_evals.context import EvalContext, RunShape, ScoredPositionsScorer

ARCHITECTURE = "tsae_hierarchical"
"""custom_saes.hierarchical.ARCHITECTURE, spelled here so that listing evals imports no torch."""


def _unavailable(architecture: str) -> Unavailable:
    return Unavailable(
        f"hierarchy measures the two levels of a {ARCHITECTURE} SAE; this SAE's architecture is "
        f"{architecture or 'unknown'}",
        f"evaluate a {ARCHITECTURE} SAE, or select the other analysis evals by name",
    )


def _check(shape: RunShape, cfg: HierarchyConfig) -> None:
    if shape.architecture != ARCHITECTURE:
        raise _unavailable(shape.architecture)
    shape.scored_start(cfg.skip_first_positions)


@register_streaming_eval("hierarchy", version=1, config=HierarchyConfig, group="analysis", check=_check)
def hierarchy(ctx: EvalContext, cfg: HierarchyConfig) -> ScoredPositionsScorer:
    """Per-level L0 and EV, MI between the levels against a permutation null, upper-level groups vs k-means."""
    from custom_saes.hierarchical import HierarchicalSAE
    from tsae_evals.context import ScoredPositionsScorer
    from tsae_evals.evals.hierarchy.stream import HierarchyScorer

    if not isinstance(ctx.sae, HierarchicalSAE):
        raise _unavailable(ctx.sae.cfg.architecture())
    inner = HierarchyScorer(ctx.sae, cfg, ctx.seed)
    start = ctx.scored_start(cfg.skip_first_positions)
    return ScoredPositionsScorer(
        cfg.n_windows,
        start,
        lambda batch: inner.add(batch.activations, batch.latents, batch.reconstruction),
        inner.finish,
    )
