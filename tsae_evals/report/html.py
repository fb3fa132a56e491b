"""The leaderboard as one self-contained HTML page: tables sortable by clicking a header, figures inline, nothing
fetched from anywhere (it opens from a file, offline, years later)."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

from tsae_evals.report.leaderboard import Column, Leaderboard, Row, format_value, legend, shown_columns
from tsae_evals.results import direction_word

_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_PREFLIGHT_NOTE = "from the preflight (about 1000 tokens): this SAE has no core result"

_CSS = """
:root { color-scheme: light; --line: #d0d7de; --head: #f6f8fa; --muted: #57606a; --accent: #0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
p.legend, p.command, p.hint { max-width: 70rem; color: var(--muted); margin: .35rem 0; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--head); padding: 1px 4px;
  border-radius: 4px; overflow-wrap: anywhere; }
.table-wrap { overflow: auto; max-height: 85vh; max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
table.leaderboard { border-collapse: separate; border-spacing: 0; font-variant-numeric: tabular-nums; }
table.leaderboard th, table.leaderboard td { padding: 3px 8px; border-bottom: 1px solid var(--line);
  white-space: nowrap; text-align: right; }
table.leaderboard thead { position: sticky; top: 0; z-index: 2; }
table.leaderboard thead th { background: var(--head); vertical-align: bottom; font-weight: 600; }
table.leaderboard thead th.eval { text-align: left; color: var(--muted); font-weight: 500; font-size: 12px;
  border-bottom: none; }
table.leaderboard th.sortable { cursor: pointer; user-select: none; }
table.leaderboard th.sortable:hover { background: #eaeef2; }
table.leaderboard th button { all: unset; cursor: pointer; }
table.leaderboard th button:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
table.leaderboard th .arrow { color: var(--accent); }
table.leaderboard th .sort::after { display: inline-block; width: 1em; content: ""; color: var(--accent); }
table.leaderboard th[aria-sort="descending"] .sort::after { content: "\\25BE"; }
table.leaderboard th[aria-sort="ascending"] .sort::after { content: "\\25B4"; }
table.leaderboard .text { text-align: left; }
table.leaderboard .first { border-left: 1px solid var(--line); }
table.leaderboard tbody tr:nth-child(even) td { background: #fafbfc; }
table.leaderboard tbody tr:hover td { background: #fff8c5; }
table.leaderboard td { background: #fff; }
table.leaderboard .stick { position: sticky; left: 0; z-index: 1; border-right: 1px solid var(--line); }
table.leaderboard thead .stick { z-index: 3; }
table.leaderboard td.missing { color: var(--muted); }
table.leaderboard td.estimate { font-style: italic; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 12px; }
ul.skipped { color: var(--muted); font: 12px ui-monospace, monospace; }
"""

# Sorting keeps each table's rows in place: a stable sort by the clicked column, best first by its declared
# direction, a second click reverses, and cells without a number stay last either way.
_JS = """
(function () {
  "use strict";
  function cellKey(row, index, type) {
    var raw = row.cells[index].getAttribute("data-value");
    if (raw === null || raw === "") return null;
    if (type === "text") return raw;
    var number = Number(raw);
    return isNaN(number) ? null : number;
  }
  function sortBy(th) {
    var table = th.closest("table");
    var index = Number(th.getAttribute("data-index"));
    var type = th.getAttribute("data-type");
    var current = th.getAttribute("aria-sort");
    var bestFirst = (type === "text" || th.getAttribute("data-direction") === "lower") ? "ascending" : "descending";
    var order = current === bestFirst ? (bestFirst === "ascending" ? "descending" : "ascending") : bestFirst;
    var sign = order === "ascending" ? 1 : -1;
    table.querySelectorAll("thead th[aria-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", order);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a, index, type), y = cellKey(b, index, type);
      if (x === null || y === null) return (x === null) - (y === null);
      if (type === "text") return sign * x.localeCompare(y, "en", { numeric: true });
      return sign * (x < y ? -1 : x > y ? 1 : 0);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.leaderboard th.sortable").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
})();
"""


def _number(value: float | None) -> str:
    """Full precision that JavaScript's Number() reads back (Python's repr spells infinity `inf`)."""
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def _direction(higher_is_better: bool | None) -> str:
    return direction_word(higher_is_better) or "none"


def _attrs(**values: str) -> str:
    """HTML attributes from keywords: `data_sae` is `data-sae`, `class_` is `class`."""
    return "".join(f' {name.rstrip("_").replace("_", "-")}="{escape(value)}"' for name, value in values.items())


def _header_cell(name: str, text: str, index: int, *, type_: str, direction: str, arrow: str = "",
                 title: str = "", extra_class: str = "", rowspan: int = 1, sorted_by: str | None = None) -> str:  # fmt: skip
    classes = " ".join(filter(None, ["sortable", "text" if type_ == "text" else "", extra_class]))
    attrs = _attrs(class_=classes, data_column=name, data_index=str(index), data_type=type_, data_direction=direction)
    if name == sorted_by:  # the board came sorted best first: say so, and a click then reverses it
        attrs += _attrs(aria_sort="ascending" if direction == "lower" else "descending")
    if title:
        attrs += _attrs(title=title)
    if rowspan > 1:
        attrs += _attrs(rowspan=str(rowspan))
    arrow_html = f' <span class="arrow">{escape(arrow)}</span>' if arrow else ""
    return f'<th scope="col"{attrs}><button type="button">{escape(text)}{arrow_html}</button><span class="sort"></span></th>'


def _sorted_column(board: Leaderboard) -> str | None:
    """The header the board was sorted by (`sort` names a column as the leaderboard's --sort does)."""
    if board.sort in ("l0", "expl_var"):
        return board.sort
    return next((c.name for c in board.columns if board.sort in (c.name, c.label)), None)


def _header(board: Leaderboard, columns: Sequence[Column]) -> list[str]:
    """Two header rows: the eval over its metrics, then each metric's label; the row's own columns span both."""
    sorted_by = _sorted_column(board)
    builtin = [
        _header_cell("sae", "sae", 0, type_="text", direction="none", title="SAE name", extra_class="stick", rowspan=2),
        _header_cell("arch", "arch", 1, type_="text", direction="none", title="architecture", rowspan=2),
        _header_cell("l0", "l0", 2, type_="number", direction="none", title="mean active latents per token (core)",
                     rowspan=2, sorted_by=sorted_by),
        _header_cell("expl_var", "expl_var", 3, type_="number", direction="higher", arrow="↑",
                     title="explained variance of the reconstruction (core)", rowspan=2, sorted_by=sorted_by),
    ]  # fmt: skip
    evals: dict[str, int] = {}
    for column in columns:
        evals[column.eval_name] = evals.get(column.eval_name, 0) + 1
    top = [
        f'<th class="eval text first" scope="colgroup" colspan="{span}">{escape(name)}</th>'
        for name, span in evals.items()
    ]
    labels = []
    for offset, column in enumerate(columns):
        first = offset == 0 or columns[offset - 1].eval_name != column.eval_name
        labels.append(
            _header_cell(column.name, column.label, 4 + offset, type_="number",
                         direction=_direction(column.higher_is_better),
                         arrow=column.arrow, title=column.description, extra_class="first" if first else "",
                         sorted_by=sorted_by)
        )  # fmt: skip
    if not columns:
        return ["<tr>" + "".join(builtin).replace(' rowspan="2"', "") + "</tr>"]
    return [f'<tr class="evals">{"".join(builtin)}{"".join(top)}</tr>', f'<tr class="labels">{"".join(labels)}</tr>']


def _cell(value: float | None, *, estimate: bool = False, first: bool = False) -> str:
    classes = ["missing" if value is None else "", "estimate" if estimate and value is not None else ""]
    classes.append("first" if first else "")
    text = format_value(value)
    attrs = _attrs(data_value=_number(value))
    if any(classes):
        attrs += _attrs(class_=" ".join(filter(None, classes)))
    if estimate and value is not None:
        text += "*"
        attrs += _attrs(title=_PREFLIGHT_NOTE)
    return f"<td{attrs}>{escape(text)}</td>"


def _row(row: Row, columns: Sequence[Column]) -> str:
    estimate = row.reference == "preflight"
    cells = [
        f'<td class="text stick"{_attrs(data_value=row.label)}>{escape(row.label)}</td>',
        f'<td class="text"{_attrs(data_value=row.architecture)}>{escape(row.architecture)}</td>',
        _cell(row.l0, estimate=estimate),
        _cell(row.explained_variance, estimate=estimate),
    ]
    for offset, column in enumerate(columns):
        first = offset == 0 or columns[offset - 1].eval_name != column.eval_name
        cells.append(_cell(row.values.get(column.name), first=first))
    return f"<tr{_attrs(data_sae=row.label, data_arch=row.architecture)}>{''.join(cells)}</tr>"


def _table(board: Leaderboard, rows: Sequence[Row], group: str | None) -> str:
    attrs = _attrs(class_="leaderboard") + (_attrs(data_group=group) if group is not None else "")
    columns = shown_columns(board, rows)
    body = "\n".join(_row(row, columns) for row in rows)
    head = "\n".join(_header(board, columns))
    return (
        f'<div class="table-wrap"><table{attrs}>\n<thead>\n{head}\n</thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'
    )


def _figure(path: Path) -> str:
    path = Path(path)
    kind = _IMAGE_TYPES.get(path.suffix.lower(), "image/png")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = escape(path.name)
    return f'<figure><img src="data:{kind};base64,{data}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def to_html(
    board: Leaderboard, figures: Sequence[Path] = (), title: str = "Leaderboard", command: str | None = None
) -> str:
    """One HTML page with no outside references: legend, a sortable table per group, figures inlined."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="legend">{escape(legend(board))}</p>',
    ]
    if command:
        parts.append(f'<p class="command">Written by <code>{escape(command)}</code>; do not edit by hand.</p>')
    parts.append(
        '<p class="hint">Click a column header to sort best first by its direction; click again to reverse.</p>'
    )
    if board.group_by is None:
        parts.append(_table(board, board.rows, None))
    else:
        for group in dict.fromkeys(row.group for row in board.rows):
            parts.append(f"<section{_attrs(class_='group', data_group=group)}><h2>{escape(group)}</h2>")
            parts.append(_table(board, [row for row in board.rows if row.group == group], group))
            parts.append("</section>")
    if figures:
        parts.append('<h2>Figures</h2><div class="figures">')
        parts.extend(_figure(path) for path in figures)
        parts.append("</div>")
    if board.skipped:
        parts.append(f'<h2>Skipped {len(board.skipped)} file(s)</h2><ul class="skipped">')
        parts.extend(f"<li>{escape(line)}</li>" for line in board.skipped)
        parts.append("</ul>")
    parts += [f"<script>{_JS}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"
