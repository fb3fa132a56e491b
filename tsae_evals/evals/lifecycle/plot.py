"""The lifecycle eval's picture: births and deaths per window position, the SAE's beside its shuffle null's."""

from __future__ import annotations

from pathlib import Path

from tsae_evals.evals.lifecycle.result import LifecycleResult


def births_and_deaths(result: LifecycleResult, path: Path, title: str) -> Path:
    """Mean births and deaths per window at each position (solid) against the shuffle null (dashed), with the
    active count on a second axis."""
    from tsae_evals.plots import _figure, _save

    # The first scored position has no predecessor, so it holds no transition: the curves start one later.
    positions = result.positions[1:]
    figure, axis = _figure(8, 4)
    axis.plot(positions, result.births[1:], color="tab:green", label="births")
    axis.plot(positions, result.deaths[1:], color="tab:red", label="deaths")
    axis.plot(positions, result.births_shuffled[1:], color="tab:green", linestyle="--", label="births (shuffled)")
    axis.plot(positions, result.deaths_shuffled[1:], color="tab:red", linestyle="--", label="deaths (shuffled)")
    axis.set_xlabel("position in window")
    axis.set_ylabel("latents per window")
    active = axis.twinx()
    active.plot(result.positions, result.active, color="tab:gray", alpha=0.5, label="active")
    active.set_ylabel("active latents", color="tab:gray")
    turnover = result.metrics.turnover
    axis.set_title(
        f"{title}: turnover {turnover.turnover:.3g} vs {turnover.turnover_shuffled:.3g} shuffled "
        f"(ratio {turnover.turnover_ratio:.3g})"
    )
    lines, labels = axis.get_legend_handles_labels()
    more_lines, more_labels = active.get_legend_handles_labels()
    axis.legend(lines + more_lines, labels + more_labels, fontsize=7, loc="upper right")
    return _save(figure, path)
