"""The position invariance eval's picture: per-latent scores against the shuffle null."""

from __future__ import annotations

from pathlib import Path

from tsae_evals.evals.position_invariance.result import PositionInvarianceResult


def invariance_histogram(result: PositionInvarianceResult, path: Path) -> Path:
    """Histogram of the scored latents' invariance, real and shuffled, with their means marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = len(result.histogram)
    edges = [i / bins for i in range(bins)]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar(edges, result.histogram, width=1 / bins, align="edge", alpha=0.6, label="latents")
    axis.bar(edges, result.histogram_shuffled, width=1 / bins, align="edge", alpha=0.6, label="shuffle null")
    scores = result.metrics.invariance
    axis.axvline(scores.mean_invariance, color="C0", linestyle="--")
    axis.axvline(scores.mean_invariance_shuffled, color="C1", linestyle="--")
    axis.set_xlabel(f"invariance (share of variance between chunks of {scores.chunk_size})")
    axis.set_ylabel("latents")
    axis.set_title(
        f"position invariance: mean {scores.mean_invariance:.3f}, null {scores.mean_invariance_shuffled:.3f}"
    )
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
