"""Results of SAE-Bench's SCR and TPP in its output layouts, plus the spread across seeds."""

from __future__ import annotations

from typing import ClassVar

from tsae_evals.evals.saebench.adapter import SaeBenchResult
from tsae_evals.results import MetricInfo

SPREAD = "seed_spread"
"""Our category beside SAE-Bench's: the sample standard deviation of each metric across seeds."""


class _SeededResult(SaeBenchResult):
    def metric_info(self) -> dict[str, MetricInfo]:
        info = super().metric_info()
        for key, declared in list(info.items()):
            name = key.partition(".")[2]
            if name in self.metrics.get(SPREAD, {}):
                info[f"{SPREAD}.{name}"] = MetricInfo(
                    label=f"{declared.label}_sd",
                    higher_is_better=None,
                    # the spread of a headline metric is printed beside it: one seed's number alone misleads
                    headline=declared.headline,
                    description=f"standard deviation across seeds of: {declared.description}",
                )
        return info


class ScrResult(_SeededResult):
    """SAE-Bench's SCR metrics per number of ablated latents (mean over seeds), one detail row per pair and seed."""

    OUTPUT: ClassVar[str] = "sae_bench.evals.scr_and_tpp.eval_output.ScrEvalOutput"
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]] = {
        **{
            f"scr_metrics.scr_metric_threshold_{n}": (f"scr_{n}", True, n in (10, 20))
            for n in (2, 5, 10, 20, 50, 100, 500)
        },
        **{f"scr_metrics.scr_dir1_threshold_{n}": (f"scr_dir1_{n}", True, False) for n in (2, 5, 10, 20, 50, 100, 500)},
    }


class TppResult(_SeededResult):
    """SAE-Bench's TPP metrics per number of ablated latents (mean over seeds), one detail row per seed."""

    OUTPUT: ClassVar[str] = "sae_bench.evals.scr_and_tpp.eval_output.TppEvalOutput"
    DECLARED: ClassVar[dict[str, tuple[str, bool | None, bool]]] = {
        **{
            f"tpp_metrics.tpp_threshold_{n}_total_metric": (f"tpp_{n}", True, n in (10, 20))
            for n in (2, 5, 10, 20, 50, 100, 500)
        },
        **{
            f"tpp_metrics.tpp_threshold_{n}_intended_diff_only": (f"tpp_intended_{n}", True, False)
            for n in (2, 5, 10, 20, 50, 100, 500)
        },
        **{
            f"tpp_metrics.tpp_threshold_{n}_unintended_diff_only": (f"tpp_unintended_{n}", False, False)
            for n in (2, 5, 10, 20, 50, 100, 500)
        },
    }
