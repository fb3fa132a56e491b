"""Result of the context-switch eval: boundary-detection AUROC per window size, for the SAE and its input."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tsae_evals.results import EvalResult, MetricInfo


class WindowRow(BaseModel):
    """Scores at one window size."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    window: int
    """w in tokens."""
    auroc: float
    """P(b at a true boundary > b at a non-boundary position), ties counted half, for the SAE's latents."""
    input_auroc: float
    """The same score computed on the SAE's input (the residual stream): the bar the latents should clear."""
    mean_boundary_score: float
    """Mean b_t of the latents at the boundaries."""
    mean_other_score: float
    """Mean b_t of the latents elsewhere."""
    n_boundaries: int
    """Positive positions (one per spliced sequence)."""
    n_other: int
    """Negative positions."""


class ContextSwitchResult(EvalResult):
    """What `context_switch` returns; its metrics are one category with an AUROC pair per window size."""

    metrics: None = None
    """Unused: the category is built from `rows`, whose window sizes are a setting."""
    rows: list[WindowRow]
    """One row per window size."""
    n_sequences: int
    """Spliced sequences scored."""
    boundary_range: tuple[int, int]
    """Positions the boundary was drawn from (uniformly, seeded), so every window size fits on both sides."""

    def metrics_dict(self) -> dict[str, dict[str, Any]]:
        auroc = {f"auroc_w{row.window}": row.auroc for row in self.rows}
        auroc.update({f"input_auroc_w{row.window}": row.input_auroc for row in self.rows})
        return {"context_switch": auroc}

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.rows]

    def unstructured(self) -> dict[str, Any]:
        return {"n_sequences": self.n_sequences, "boundary_range": list(self.boundary_range)}

    def metric_info(self) -> dict[str, MetricInfo]:
        auroc_doc, input_doc = (WindowRow.model_fields[name].description or "" for name in ("auroc", "input_auroc"))
        info = {}
        for row in self.rows:
            info[f"context_switch.auroc_w{row.window}"] = MetricInfo(
                label=f"auroc_w{row.window}", higher_is_better=True, headline=True, description=auroc_doc
            )
        for row in self.rows:
            info[f"context_switch.input_auroc_w{row.window}"] = MetricInfo(
                label=f"resid_w{row.window}", higher_is_better=None, headline=True, description=input_doc
            )
        return info
