"""The sweep's comparison: per variant and metric, the mean and spread over seeds and the effect against the
variant's control, paired by seed. Reads result records only through their metric declarations (no per-eval code).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsae_evals.errors import UsageError
from tsae_evals.results import direction_arrow

if TYPE_CHECKING:
    from tsae_evals.sweep.recipe import Recipe, Variant

MECHANISM = "mechanism_share"
"""The training-log metric each architecture declares for its mechanism (custom_saes.base.TsaeSAE.mechanism)."""


def _spread(values: list[float]) -> tuple[float | None, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else None)


def mechanism_share(sae_dir: Path) -> float | None:
    """Mean `mechanism_share` over the last three logged steps of training (None: the SAE logs none)."""
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    log = (cfg.get("metadata") or {}).get("training_log") or []
    shares = [row[MECHANISM] for row in log if MECHANISM in row][-3:]
    return statistics.fmean(shares) if shares else None


def _records(results_dir: Path) -> dict[tuple[str, str], Any]:
    from tsae_evals.results import read_record

    records = {}
    for path in sorted(results_dir.glob("*/*_eval_results.json")):
        record = read_record(path)
        records[(record.sae_lens_id, record.eval_type_id)] = record
    return records


def _columns(recipe: Recipe, records: dict[tuple[str, str], Any]) -> list[tuple[str, str, bool | None]]:
    """(column name `eval.label`, record key `category.metric`, higher_is_better) in eval order."""
    available: dict[str, tuple[str, bool | None, bool]] = {}
    for (_, eval_name), record in sorted(records.items(), key=lambda item: item[0][1]):
        for key, info in record.metric_info.items():
            available.setdefault(f"{eval_name}.{info.label}", (key, info.higher_is_better, info.headline))
    if recipe.metrics:
        missing = [name for name in recipe.metrics if name not in available]
        if missing:
            raise UsageError(
                f"recipe {recipe.name}: metrics {missing} are in no result",
                f"name them as eval.label; available: {', '.join(sorted(available))}",
            )
        names = list(recipe.metrics)
    else:
        names = [name for name, (_, _, headline) in available.items() if headline]
    return [(name, available[name][0], available[name][1]) for name in names]


def comparison_rows(
    recipe: Recipe, variants: list[Variant], directories: dict[tuple[str, int], Path], results_dir: Path
) -> list[dict[str, Any]]:
    """One row per variant: per-seed values, mean and SD of every column, and effects against its control."""
    records = _records(results_dir)
    columns = _columns(recipe, records)

    def value(variant: str, seed: int, column: tuple[str, str, bool | None]) -> float | None:
        eval_name = column[0].split(".", 1)[0]
        record = records.get((directories[(variant, seed)].name, eval_name))
        raw = record.metrics().get(column[1]) if record is not None else None
        return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None

    rows = []
    for variant in variants:
        shares = [mechanism_share(directories[(variant.name, seed)]) for seed in recipe.seeds]
        share_mean, share_sd = _spread([s for s in shares if s is not None])
        row: dict[str, Any] = {
            "variant": variant.name,
            "arch": variant.arch,
            "control": variant.control,
            "seeds": list(recipe.seeds),
            MECHANISM: share_mean,
            f"{MECHANISM}_sd": share_sd,
            "metrics": {},
        }
        for column in columns:
            values = [value(variant.name, seed, column) for seed in recipe.seeds]
            controls = [value(variant.control, seed, column) for seed in recipe.seeds]
            differences = [v - c for v, c in zip(values, controls, strict=True) if v is not None and c is not None]
            mean, sd = _spread([v for v in values if v is not None])
            effect, effect_sd = _spread(differences) if variant.name != variant.control else (None, None)
            row["metrics"][column[0]] = {
                "values": values,
                "mean": mean,
                "sd": sd,
                "effect": effect,
                "effect_sd": effect_sd,
                "pairs": len(differences),
                "higher_is_better": column[2],
            }
        rows.append(row)
    return rows


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _cell(metric: dict[str, Any], is_control: bool) -> str:
    text = _number(metric["mean"]) + (f" ± {metric['sd']:.2g}" if metric["sd"] is not None else "")
    if is_control or metric["effect"] is None:
        return text
    effect = f"{metric['effect']:+.3g}" + (f" ± {metric['effect_sd']:.2g}" if metric["effect_sd"] is not None else "")
    return f"{text} (Δ {effect})"


def markdown_table(recipe: Recipe, rows: list[dict[str, Any]]) -> str:
    """The table as Markdown: mean ± SD over seeds, and Δ (mean ± SD of the paired difference) to the control."""
    metric_names = list(rows[0]["metrics"]) if rows else []
    arrows = {
        name: f" {direction_arrow(rows[0]['metrics'][name]['higher_is_better'])}".rstrip() for name in metric_names
    }
    header = ["variant", "arch", "control", "mechanism share", *(f"{name}{arrows[name]}" for name in metric_names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        is_control = row["variant"] == row["control"]
        share = _number(row[MECHANISM]) + (
            f" ± {row[MECHANISM + '_sd']:.2g}" if row[MECHANISM + "_sd"] is not None else ""
        )
        cells = [
            row["variant"],
            row["arch"],
            "(control)" if is_control else row["control"],
            share if row[MECHANISM] is not None else "",
            *(_cell(row["metrics"][name], is_control) for name in metric_names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    intro = [f"# {recipe.name}", ""]
    if recipe.description:
        intro += [recipe.description.strip(), ""]
    intro += [
        f"Seeds {recipe.seeds} (data order fixed by data_seed {recipe.data_seed}); cells are mean ± SD over seeds; "
        "Δ is the mean ± SD over seeds of (variant − its control) on the same seed; ↑/↓: higher/lower is better. "
        "Mechanism share: see each architecture's `mechanism` (custom_saes).",
        "",
    ]
    return "\n".join(intro + lines) + "\n"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- sweep:{name} -->", f"<!-- /sweep:{name} -->"


def published_block(text: str, name: str, where: str) -> tuple[int, int]:
    """Start and end offsets of the text between the recipe's markers in `text`, or a UsageError."""
    start_marker, end_marker = _markers(name)
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise UsageError(
            f"{where} has no {start_marker} ... {end_marker} block for the sweep's table",
            "add both markers on their own lines where the table belongs, or drop `publish` from the recipe",
        )
    return start + len(start_marker), end


def publish(recipe: Recipe, rows: list[dict[str, Any]], target: Path) -> None:
    """Replace the block between the recipe's markers in `target` with the table (its title line dropped)."""
    text = target.read_text(encoding="utf-8")
    start, end = published_block(text, recipe.name, where=str(target))
    table = markdown_table(recipe, rows).split("\n", 2)[2]
    note = f"Written by `python -m tsae_evals sweep recipes/{recipe.name}.yaml`; do not edit by hand.\n\n"
    target.write_text(text[:start] + "\n" + note + table + text[end:], encoding="utf-8")


def write_tables(recipe: Recipe, rows: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """table.md and table.csv (one line per variant and metric, with every seed's value) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "table.md"
    markdown.write_text(markdown_table(recipe, rows), encoding="utf-8")
    csv_path = out / "table.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["variant", "arch", "control", "metric", "higher_is_better", "mean", "sd", "effect", "effect_sd",
             "pairs", "values", MECHANISM]
        )  # fmt: skip
        for row in rows:
            for name, metric in row["metrics"].items():
                writer.writerow(
                    [row["variant"], row["arch"], row["control"], name, metric["higher_is_better"], metric["mean"],
                     metric["sd"], metric["effect"], metric["effect_sd"], metric["pairs"],
                     json.dumps(metric["values"]), row[MECHANISM]]
                )  # fmt: skip
    return markdown, csv_path


def write_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """One panel per metric: each variant's effect against its control, with the SD over seeds as error bars."""
    compared = [row for row in rows if row["variant"] != row["control"]]
    if not compared or not compared[0]["metrics"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(compared[0]["metrics"])
    columns = min(4, len(names))
    figure_rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(
        figure_rows, columns, figsize=(4.2 * columns, 0.35 * len(compared) * figure_rows + 1.5), squeeze=False
    )
    labels = [row["variant"] for row in compared]
    for axis, name in zip(axes.flat, names, strict=False):
        effects = [row["metrics"][name]["effect"] or 0.0 for row in compared]
        errors = [row["metrics"][name]["effect_sd"] or 0.0 for row in compared]
        axis.barh(range(len(compared)), effects, xerr=errors, color="tab:blue", alpha=0.7)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_yticks(range(len(compared)), labels if axis in axes[:, 0] else [""] * len(labels), fontsize=7)
        direction = {True: " (higher better)", False: " (lower better)"}.get(
            compared[0]["metrics"][name]["higher_is_better"], ""
        )
        axis.set_title(f"Δ {name}{direction}", fontsize=8)
        axis.invert_yaxis()
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
