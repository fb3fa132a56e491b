"""Result of SAE-Bench's autointerp, in its `AutoInterpEvalOutput` layout."""

from __future__ import annotations

from typing import ClassVar

from tsae_evals.evals.saebench.adapter import SaeBenchResult


class AutoInterpResult(SaeBenchResult):
    """SAE-Bench's autointerp score (mean detection accuracy over the judged latents) and its spread; per latent,
    the judge's explanation, predictions, the truly active examples, score and the full prompt logs."""

    OUTPUT: ClassVar[str] = "sae_bench.evals.autointerp.eval_output.AutoInterpEvalOutput"
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]] = {
        "autointerp.autointerp_score": ("autointerp", True, True),
        "autointerp.autointerp_std_dev": ("autointerp_std", None, False),
    }
