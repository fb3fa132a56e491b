"""The feature redundancy eval's picture: the correlation matrix of the most frequent latents."""

from __future__ import annotations

from pathlib import Path

from tsae_evals.evals.feature_redundancy.result import FeatureRedundancyResult


def correlation_heatmap(result: FeatureRedundancyResult, path: Path, title: str = "") -> Path:
    """Pearson r among the most frequent counted latents (rows and columns most frequent first), -1 to 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = len(result.block_latents)
    figure, axis = plt.subplots(figsize=(7, 6))
    if size:
        image = axis.imshow(result.block_correlation, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        names = [str(i) for i in result.block_latents]
        fontsize = 6 if size <= 32 else 4
        axis.set_xticks(range(size), names, rotation=90, fontsize=fontsize)
        axis.set_yticks(range(size), names, fontsize=fontsize)
        figure.colorbar(image, ax=axis, fraction=0.046, label="Pearson r")
    else:
        axis.text(0.5, 0.5, "no latent counted", ha="center", va="center")
    correlation = result.metrics.correlation
    axis.set_title(
        f"{title + ': ' if title else ''}r among the {size} most frequent latents\n"
        f"mean |r| {correlation.mean_abs_r:.3f} (null {correlation.mean_abs_r_shuffled:.3f}), "
        f"r > threshold {correlation.redundant_pair_fraction:.2%}",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
