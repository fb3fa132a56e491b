"""Leaderboard figures: each directional metric against L0 (as SAE-Bench draws its comparisons), and temporal
stability against reconstruction. PNG files whose bytes depend on the board only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tsae_evals.report.leaderboard import Column, Leaderboard, Row

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
GRID_COLUMNS = 4
TEMPORAL_LABELS = ("jaccard_excess", "smoothness")
DPI = 100
_PNG_METADATA = {"Software": None}
"""No matplotlib version in the file: the same board gives the same bytes on any install."""


def _pyplot() -> Any:
    """pyplot on the Agg backend, imported only when a figure is drawn (the report layer loads without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _styles(rows: Sequence[Row]) -> dict[str, tuple[Any, str]]:
    """Architecture -> (colour, marker), in sorted order so every figure of one board agrees."""
    plt = _pyplot()
    architectures = sorted({row.architecture for row in rows})
    if len(architectures) <= 10:
        palette = list(plt.get_cmap("tab10").colors)
    else:  # tab20 pairs a dark and a light shade: all dark ones first, so neighbours in the legend differ
        shades = plt.get_cmap("tab20").colors
        palette = [*shades[::2], *shades[1::2]]
    return {arch: (palette[i % len(palette)], MARKERS[i % len(MARKERS)]) for i, arch in enumerate(architectures)}


def _points(rows: Sequence[Row], x_of: Any, column: Column) -> list[tuple[Row, float, float]]:
    points = []
    for row in rows:
        x, y = x_of(row), row.values.get(column.name)
        if _finite(x) and _finite(y):
            points.append((row, float(x), float(y)))  # type: ignore[arg-type]
    return points


def _scatter(axes: Any, points: list[tuple[Row, float, float]], styles: dict[str, tuple[Any, str]]) -> None:
    for arch in sorted({row.architecture for row, _, _ in points}):
        colour, marker = styles[arch]
        for hollow in (False, True):
            # Preflight L0 and explained variance come from ~1000 tokens: drawn hollow, as the table stars them.
            chosen = [
                (x, y) for row, x, y in points if row.architecture == arch and (row.reference == "preflight") == hollow
            ]
            if chosen:
                xs, ys = zip(*chosen, strict=True)
                face = "none" if hollow else colour
                axes.scatter(xs, ys, marker=marker, s=36, facecolors=face, edgecolors=colour, linewidths=1.2, zorder=3)
    axes.grid(True, which="both", alpha=0.3, linewidth=0.6)
    axes.tick_params(labelsize=8)


def _log_l0_axis(axes: Any, xs: Sequence[float]) -> None:
    """Log L0 axis with plain-number ticks; SAEs of one L0 still get a readable span around them."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = min(xs), max(xs)
    if high / low < 2.2:  # a narrower span can fall between the 1-2-3-5 ticks and show none
        middle = math.sqrt(low * high)
        low, high = middle / 1.5, middle * 1.5
    else:
        low, high = low / 1.15, high * 1.15
    decades = math.log10(high / low)
    subs = (1.0,) if decades > 2.5 else (1.0, 2.0, 5.0) if decades > 1.2 else (1.0, 2.0, 3.0, 5.0)
    axes.set_xscale("log")
    axes.set_xlim(low, high)
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _legend(figure: Any, points: list[tuple[Row, float, float]], styles: dict[str, tuple[Any, str]]) -> None:
    """One legend for the whole figure, below the panels, naming only the architectures drawn."""
    from matplotlib.lines import Line2D

    drawn = sorted({row.architecture for row, _, _ in points})
    handles = [
        Line2D([], [], linestyle="", marker=styles[arch][1], color=styles[arch][0], markersize=7, label=arch)
        for arch in drawn
    ]
    if any(row.reference == "preflight" for row, _, _ in points):
        handles.append(
            Line2D([], [], linestyle="", marker="o", markerfacecolor="none", markeredgecolor="0.3", markersize=7,
                   label="hollow: preflight L0/EV (no core)")
        )  # fmt: skip
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=9, frameon=False)


def _save(figure: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, metadata=_PNG_METADATA)
    _pyplot().close(figure)
    return path


def l0_panels(board: Leaderboard, path: Path) -> Path | None:
    """One panel per directional column: the metric against L0 (log scale), one colour and marker per
    architecture. None (and no file) when no column has two SAEs to place."""
    panels = []
    for column in board.columns:
        if column.higher_is_better is None:
            continue
        points = [point for point in _points(board.rows, lambda row: row.l0, column) if point[1] > 0]
        if len(points) >= 2:
            panels.append((column, points))
    if not panels:
        return None
    plt = _pyplot()
    styles = _styles(board.rows)
    ncols = min(GRID_COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    figure, grid = plt.subplots(
        nrows, ncols, figsize=(4.0 * ncols, 3.2 * nrows + 0.8), layout="constrained", squeeze=False
    )
    for axes, (column, points) in zip(grid.flat, panels, strict=False):
        _scatter(axes, points, styles)
        _log_l0_axis(axes, [x for _, x, _ in points])
        axes.set_xlabel("L0", fontsize=9)
        axes.set_title(f"{column.name} {column.arrow}", fontsize=9)
    for axes in list(grid.flat)[len(panels) :]:
        axes.set_visible(False)
    _legend(figure, [point for _, points in panels for point in points], styles)
    return _save(figure, path)


def temporal_panel(board: Leaderboard, path: Path) -> Path | None:
    """Temporal stability (`jaccard_excess`, `smoothness`) against explained variance: whether an SAE buys
    stability with reconstruction. None (and no file) without such a column or two SAEs to place."""
    panels = []
    for label in TEMPORAL_LABELS:
        for column in board.columns:
            if column.eval_name == "temporal_stability" and column.label == label:
                points = _points(board.rows, lambda row: row.explained_variance, column)
                if len(points) >= 2:
                    panels.append((column, points))
    if not panels:
        return None
    plt = _pyplot()
    styles = _styles(board.rows)
    figure, grid = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.2), layout="constrained", squeeze=False)
    for axes, (column, points) in zip(grid.flat, panels, strict=True):
        _scatter(axes, points, styles)
        axes.set_xlabel("explained variance (core) ↑", fontsize=9)
        better = {True: " (higher is better)", False: " (lower is better)", None: ""}[column.higher_is_better]
        axes.set_title(f"{column.name} {column.arrow}", fontsize=9)
        axes.set_ylabel(f"{column.label}{better}", fontsize=9)
    figure.suptitle("Temporal stability against reconstruction", fontsize=10)
    _legend(figure, [point for _, points in panels for point in points], styles)
    return _save(figure, path)


def write_figures(board: Leaderboard, out_dir: Path, stem: str = "leaderboard") -> list[Path]:
    """`{stem}_l0.png` and `{stem}_temporal.png` in `out_dir`, each where the board has something to draw."""
    out_dir = Path(out_dir)
    written = [
        l0_panels(board, out_dir / f"{stem}_l0.png"),
        temporal_panel(board, out_dir / f"{stem}_temporal.png"),
    ]
    return [path for path in written if path is not None]
