"""The leaderboard: one row per SAE, one column per headline metric of each eval, L0 and explained variance beside
every row. Columns, directions and formats come from the metrics' declarations; nothing here knows an eval."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch

from tsae_evals.errors import UsageError
from tsae_evals.report.records import DataKey, Loaded, RecordSet, SaeKey, refuse_unknown
from tsae_evals.results import direction_arrow, direction_word

DEFAULT_L0_BANDS = (20.0, 40.0, 80.0, 160.0, 320.0)
"""Band edges: SAE-Bench compares SAEs across L0 20-200, and only like against like is a fair comparison."""
L0_KEY = ("core", "sparsity.l0")
EV_KEY = ("core", "reconstruction_quality.explained_variance")
GROUPINGS = ("arch", "l0_band")


@dataclass(frozen=True)
class Column:
    """One metric of one eval, as its declaration shows it."""

    eval_name: str
    key: str
    """`category.metric` in the record."""
    label: str
    higher_is_better: bool | None
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.eval_name}.{self.label}"

    @property
    def arrow(self) -> str:
        return direction_arrow(self.higher_is_better)


@dataclass
class Row:
    """One SAE."""

    sae: SaeKey
    architecture: str
    l0: float | None
    explained_variance: float | None
    reference: str
    """Where L0 and explained variance come from: `core`, or `preflight` (about 1000 tokens) without a core result."""
    values: dict[str, float | None] = field(default_factory=dict)
    """Column name -> value (None: no result of that eval for this SAE)."""
    group: str = ""

    @property
    def label(self) -> str:
        return self.sae.name


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[Row]
    setups: list[DataKey]
    skipped: list[str]
    group_by: str | None = None
    sort: str | None = None


def l0_band(l0: float | None, edges: Sequence[float] = DEFAULT_L0_BANDS) -> str:
    if l0 is None or not math.isfinite(l0):
        return "L0 unknown"
    lower = 0.0
    for edge in edges:
        if l0 < edge:
            return f"L0 {lower:g}-{edge:g}"
        lower = edge
    return f"L0 ≥{lower:g}"


def _reference(records: list[Loaded]) -> tuple[float | None, float | None, str]:
    """L0 and explained variance from core when there is one, else from the preflight every run records."""
    core = next((loaded for loaded in records if loaded.eval_name == L0_KEY[0]), None)
    if core is not None:
        numbers = core.numbers()
        return numbers.get(L0_KEY[1]), numbers.get(EV_KEY[1]), "core"
    for loaded in records:
        provenance = loaded.record.provenance
        if provenance is not None:
            return provenance.preflight.mean_l0, provenance.preflight.explained_variance, "preflight"
    return None, None, ""


def available_columns(found: RecordSet) -> dict[str, Column]:
    """Every declared metric, by column name, in eval then declaration order."""
    columns: dict[str, Column] = {}
    for eval_name, declared in sorted(found.declarations().items()):
        for key, info in declared.items():
            column = Column(eval_name, key, info.label, info.higher_is_better, info.description)
            columns.setdefault(column.name, column)
    return columns


def choose_columns(found: RecordSet, evals: Sequence[str] | None, metrics: Sequence[str] | None) -> list[Column]:
    """The named metrics (`eval.label`), or every headline metric of the named evals (all evals by default)."""
    available = available_columns(found)
    present = {loaded.eval_name for loaded in found.records}
    if evals:
        refuse_unknown("--evals", evals, present, why="which no loaded result is from",
                       fix=f"choose among: {', '.join(sorted(present))}")  # fmt: skip
    if metrics:
        available.update(_undeclared(found, metrics, available))
        refuse_unknown("--metrics", metrics, available, why="which no loaded result declares",
                       fix=f"name them as eval.label, e.g. {next(iter(available), 'core.l0')}; `--list-metrics` shows them all")  # fmt: skip
        return [available[name] for name in metrics]
    headline_keys = {
        (eval_name, key) for eval_name, declared in found.declarations().items() for key, info in declared.items()
        if info.headline
    }  # fmt: skip
    shown_beside_every_row = {L0_KEY, EV_KEY}
    return [
        column
        for column in available.values()
        if (column.eval_name, column.key) in headline_keys - shown_beside_every_row
        and (not evals or column.eval_name in evals)
    ]


def _undeclared(found: RecordSet, names: Sequence[str], available: dict[str, Column]) -> dict[str, Column]:
    """Columns named by raw key (`eval.category.metric`) for records that declare nothing: files SAE-Bench wrote,
    and ours from before records carried declarations. No direction is claimed for them."""
    present = {(loaded.eval_name, key) for loaded in found.records for key in loaded.numbers()}
    columns = {}
    for name in names:
        eval_name, _, key = name.partition(".")
        if name not in available and (eval_name, key) in present:
            columns[name] = Column(eval_name, key, key, None)
    return columns


def _sort_key(column: Column):  # type: ignore[no-untyped-def]
    def key(row: Row) -> tuple[int, float]:
        value = row.values.get(column.name)
        if value is None or math.isnan(value):
            return (1, 0.0)  # no value: last, whichever way the metric points
        return (0, value if column.higher_is_better is False else -value)

    return key


def build_leaderboard(
    found: RecordSet,
    *,
    evals: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    sae_patterns: Sequence[str] | None = None,
    architectures: Sequence[str] | None = None,
    l0_range: tuple[float | None, float | None] = (None, None),
    sort: str | None = None,
    group_by: str | None = None,
    l0_bands: Sequence[float] = DEFAULT_L0_BANDS,
    allow_mixed: bool = False,
) -> Leaderboard:
    """Rows for the SAEs that pass the filters; sorted best first by `sort` (a column name, `l0` or `expl_var`)
    within groups of `group_by` (`arch` or `l0_band`)."""
    found.refuse_mixed(allow_mixed)
    if group_by is not None and group_by not in GROUPINGS:
        raise UsageError(f"--group-by {group_by!r} is not a grouping", f"use one of {', '.join(GROUPINGS)}")
    columns = choose_columns(found, evals, metrics)
    by_sae: dict[SaeKey, list[Loaded]] = {}
    for loaded in found.records:
        by_sae.setdefault(loaded.sae, []).append(loaded)
    ambiguous = {key.name for key in by_sae if sum(other.name == key.name for other in by_sae) > 1}

    rows = []
    for sae, records in by_sae.items():
        l0, explained_variance, reference = _reference(records)
        row = Row(sae, records[0].architecture, l0, explained_variance, reference)
        by_eval = {loaded.eval_name: loaded for loaded in records}
        for column in columns:
            source = by_eval.get(column.eval_name)
            row.values[column.name] = source.numbers().get(column.key) if source is not None else None
        if sae.name in ambiguous and sae.weights_hash:  # same name, different weights: say which is which
            row.sae = SaeKey(sae.release, f"{sae.sae_id} [{sae.weights_hash[:8]}]", sae.weights_hash)
        rows.append(row)

    rows = [row for row in rows if _keep(row, sae_patterns, architectures, l0_range)]
    if columns:  # an SAE none of the chosen evals ran on has nothing to show
        rows = [row for row in rows if any(value is not None for value in row.values.values())]
    if not rows:
        raise UsageError("no SAE passes the filters", "loosen --sae, --arch or --l0")
    for row in rows:
        row.group = {"arch": row.architecture, "l0_band": l0_band(row.l0, l0_bands)}.get(group_by or "", "")

    rows.sort(key=lambda row: row.label)
    if sort is not None:
        rows.sort(key=_sort_key(_sort_column(sort, columns)))
    if group_by is not None:
        order = {"arch": lambda row: (row.group,), "l0_band": lambda row: (row.l0 is None, _band_floor(row, l0_bands))}
        rows.sort(key=order[group_by])
    return Leaderboard(columns, rows, found.data_keys(), list(found.skipped), group_by, sort)


def _band_floor(row: Row, edges: Sequence[float]) -> float:
    return max((edge for edge in edges if row.l0 is not None and row.l0 >= edge), default=0.0)


def _sort_column(name: str, columns: list[Column]) -> Column:
    builtin = {"l0": Column("core", "l0", "l0", None), "expl_var": Column("core", "expl_var", "expl_var", True)}
    if name in builtin:
        return Column("", name, name, builtin[name].higher_is_better)
    for column in columns:
        if name in (column.name, column.label):
            return column
    raise UsageError(f"--sort {name!r} is not a column of this table", "name a column as eval.label (or l0, expl_var)")


def _keep(
    row: Row,
    sae_patterns: Sequence[str] | None,
    architectures: Sequence[str] | None,
    l0_range: tuple[float | None, float | None],
) -> bool:
    if sae_patterns and not any(fnmatch(row.sae.name, pattern) for pattern in sae_patterns):
        return False
    if architectures and row.architecture not in architectures:
        return False
    low, high = l0_range
    if low is not None or high is not None:
        if row.l0 is None:
            return False
        if (low is not None and row.l0 < low) or (high is not None and row.l0 > high):
            return False
    return True


def shown_columns(board: Leaderboard, rows: Sequence[Row]) -> list[Column]:
    """The board's columns that hold a value for at least one of `rows`: a group's table leaves out the evals
    none of its SAEs ran."""
    return [column for column in board.columns if any(row.values.get(column.name) is not None for row in rows)]


def row_value(row: Row, name: str) -> float | None:
    """A column's value, with `l0` and `expl_var` from the row's reference."""
    if name == "l0":
        return row.l0
    if name == "expl_var":
        return row.explained_variance
    return row.values.get(name)


def format_value(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "nan"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


# --- output --------------------------------------------------------------------------------------------------


def _header(columns: Sequence[Column]) -> list[str]:
    return ["sae", "arch", "l0", "expl_var", *(f"{column.name} {column.arrow}".strip() for column in columns)]


def _cells(row: Row, columns: Sequence[Column]) -> list[str]:
    star = "*" if row.reference == "preflight" else ""
    return [
        row.label,
        row.architecture,
        format_value(row.l0) + (star if row.l0 is not None else ""),
        format_value(row.explained_variance) + (star if row.explained_variance is not None else ""),
        *(format_value(row.values.get(column.name)) for column in columns),
    ]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def legend(board: Leaderboard) -> str:
    setups = "; ".join(str(key) for key in board.setups)
    return (
        f"Measured on {setups}. One row per SAE; ↑/↓: higher/lower is better (no arrow: a null, baseline or count "
        "shown beside its metric). L0 and expl_var come from `core`; a * marks the preflight's figures (about "
        "1000 tokens) for an SAE with no core result. Empty cells: that eval was not run on that SAE (in grouped tables, a metric no SAE of the group has is left out)."
    )


def to_markdown(board: Leaderboard, title: str = "Leaderboard", command: str | None = None) -> str:
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Written by `{command}`; do not edit by hand.", ""]
    lines += [legend(board), ""]
    groups = [board.rows] if board.group_by is None else [
        [row for row in board.rows if row.group == group] for group in dict.fromkeys(row.group for row in board.rows)
    ]  # fmt: skip
    for rows in groups:
        columns = shown_columns(board, rows)
        if board.group_by is not None:
            lines += [f"## {rows[0].group}", ""]
        lines += _markdown_table(_header(columns), [_cells(row, columns) for row in rows])
        lines.append("")
    if board.skipped:
        lines += ["", f"Skipped {len(board.skipped)} file(s):", *(f"- {line}" for line in board.skipped)]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(board: Leaderboard) -> str:
    """Full-precision values; one header row with column names (direction in the second header row)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sae", "release", "weights_hash", "arch", "group", "l0", "expl_var", "reference",
                     *(column.name for column in board.columns)])  # fmt: skip
    writer.writerow(["direction", "", "", "", "", "", "higher", "",
                     *(direction_word(c.higher_is_better) for c in board.columns)])  # fmt: skip
    for row in board.rows:
        writer.writerow(
            [row.sae.sae_id, row.sae.release, row.sae.weights_hash or "", row.architecture, row.group,
             raw_value(row.l0), raw_value(row.explained_variance), row.reference,
             *(raw_value(row.values.get(column.name)) for column in board.columns)]
        )  # fmt: skip
    return out.getvalue()


def raw_value(value: float | None) -> str:
    """A CSV cell at full precision (empty for a missing value)."""
    return "" if value is None else repr(value)
