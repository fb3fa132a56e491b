"""The table `run` prints: one block per eval, one row per SAE, with preflight and failures spelled out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabulate import tabulate

if TYPE_CHECKING:
    from tsae_evals.runner import EvalOutcome


def format_summary(outcomes: list[EvalOutcome]) -> str:
    blocks = []
    for eval_name in dict.fromkeys(o.eval_name for o in outcomes):
        rows = [o for o in outcomes if o.eval_name == eval_name]
        columns = list(dict.fromkeys(key for o in rows for key in o.summary))
        table = [
            [
                o.sae_label,
                o.preflight.status if o.preflight else "",
                o.status,
                *(_cell(o.summary.get(c)) for c in columns),
            ]
            for o in rows
        ]
        blocks.append(f"== {eval_name}\n" + tabulate(table, headers=["sae", "preflight", "status", *columns]))
    notes = []
    for label in dict.fromkeys(o.sae_label for o in outcomes):
        report = next((o.preflight for o in outcomes if o.sae_label == label and o.preflight), None)
        if report is not None and report.status != "pass":
            verdict = "NOT MEANINGFUL" if report.failed else "warning"
            notes.append(f"preflight {verdict} for {label}: {report.headline()}")
    notes += [
        f"{o.status}: {o.eval_name} on {o.sae_label}: {o.message}"
        for o in outcomes
        if o.status in {"failed", "skipped"}
    ]
    # One line per eval, not per SAE: what is missing is the same for all of them.
    unavailable = {o.eval_name: o.message for o in outcomes if o.status == "unavailable"}
    notes += [f"not run: {name}: {message}" for name, message in unavailable.items()]
    reused = [o for o in outcomes if o.status == "reused"]
    if reused:
        notes.append(f"reused {len(reused)} existing result(s) with the same eval version, config, weights and data")
    written = [f"wrote {path}" for o in outcomes if o.status == "ok" and o.path for path in [o.path, *o.plots]]
    return "\n\n".join(blocks + ["\n".join(notes + written)]).rstrip()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
