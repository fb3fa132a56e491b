"""Result of SAE-Bench's sparse probing, in its `SparseProbingEvalOutput` layout."""

from __future__ import annotations

from typing import ClassVar

from tsae_evals.evals.saebench.adapter import SaeBenchResult


class SparseProbingResult(SaeBenchResult):
    """SAE-Bench's sparse-probing metric categories (`llm`, `sae`), one detail row per dataset, per-class accuracies."""

    OUTPUT: ClassVar[str] = "sae_bench.evals.sparse_probing.eval_output.SparseProbingEvalOutput"
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]] = {
        "llm.llm_test_accuracy": ("llm_acc", None, False),
        "llm.llm_top_1_test_accuracy": ("llm_top1", None, True),
        "llm.llm_top_2_test_accuracy": ("llm_top2", None, False),
        "llm.llm_top_5_test_accuracy": ("llm_top5", None, False),
        "sae.sae_test_accuracy": ("sae_acc", True, True),
        "sae.sae_top_1_test_accuracy": ("sae_top1", True, True),
        "sae.sae_top_2_test_accuracy": ("sae_top2", True, False),
        "sae.sae_top_5_test_accuracy": ("sae_top5", True, True),
    }
