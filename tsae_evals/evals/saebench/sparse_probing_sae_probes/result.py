"""Result of SAE-Bench's sae-probes wrapper, in its `SparseProbingSaeProbesEvalOutput` layout."""

from __future__ import annotations

from typing import ClassVar

from tsae_evals.evals.saebench.adapter import SaeBenchResult


class SparseProbingSaeProbesResult(SaeBenchResult):
    """sae-probes' top-k SAE probes and the model baseline: accuracy, AUC and F1, mean over sets and per set."""

    OUTPUT: ClassVar[str] = "sae_bench.evals.sparse_probing_sae_probes.eval_output.SparseProbingSaeProbesEvalOutput"
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]] = {
        "llm.llm_test_accuracy": ("llm_acc", None, True),
        "llm.llm_test_auc": ("llm_auc", None, False),
        "sae.sae_top_1_test_accuracy": ("sae_top1", True, True),
        "sae.sae_top_1_test_auc": ("sae_top1_auc", True, False),
        "sae.sae_top_2_test_accuracy": ("sae_top2", True, False),
        "sae.sae_top_5_test_accuracy": ("sae_top5", True, True),
        "sae.sae_top_5_test_auc": ("sae_top5_auc", True, False),
    }
