"""Result of SAE-Bench's unlearning, in its `UnlearningEvalOutput` layout."""

from __future__ import annotations

from typing import ClassVar

from tsae_evals.evals.saebench.adapter import SaeBenchResult


class UnlearningResult(SaeBenchResult):
    """SAE-Bench's unlearning score; the unstructured part holds every sweep point's accuracies and the data used."""

    OUTPUT: ClassVar[str] = "sae_bench.evals.unlearning.eval_output.UnlearningEvalOutput"
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]] = {
        "unlearning.unlearning_score": ("unlearning", True, True),
    }
