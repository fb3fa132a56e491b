"""Comparing two sets of results: for each eval and metric, base against new, with the difference, the verdict the
metric's declared direction gives, and a p-value only where the records carry what one needs: training seeds on
both sides (Welch's t-test) or the eval's own interval bounds (a z-test). Nothing here knows an eval."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from tsae_evals.errors import UsageError
from tsae_evals.report.leaderboard import Column, format_value, raw_value
from tsae_evals.report.records import Loaded, RecordSet, refuse_unknown
from tsae_evals.results import MetricInfo, direction_word

SIGNIFICANCE = 0.05
"""p below this is marked significant."""
DEFAULT_CONFIDENCE = 0.95
"""Coverage of declared intervals whose eval config has no `confidence` setting."""
NO_BASIS = "no seeds or interval"
SIDES = ("BASE", "NEW")


@dataclass
class Estimate:
    """One side's value of one metric: the replicates (training seeds) of one variant."""

    values: list[float]
    """One value per record that has the metric (NaN kept: a NaN replicate makes the mean NaN)."""
    intervals: list[tuple[float, float] | None] = field(default_factory=list)
    """Each record's declared interval bounds, None where it has none (or they are not finite)."""
    confidences: list[float] = field(default_factory=list)
    """Each record's interval coverage."""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / self.n if self.values else math.nan

    @property
    def sd(self) -> float | None:
        """Sample SD over seeds; None with fewer than two."""
        if self.n < 2:
            return None
        mean = self.mean
        return math.sqrt(math.fsum((value - mean) ** 2 for value in self.values) / (self.n - 1))

    @property
    def se_from_intervals(self) -> float | None:
        """SE of the mean from the records' intervals, each read as a normal one: (hi - lo) / (2 z); None unless
        every record has one. These bounds carry the eval's measurement noise only, not the seed's."""
        if not self.values or len(self.intervals) != self.n or any(bounds is None for bounds in self.intervals):
            return None
        errors = [
            (bounds[1] - bounds[0]) / (2 * NormalDist().inv_cdf(0.5 + confidence / 2))
            for bounds, confidence in zip(self.intervals, self.confidences, strict=True)
            if bounds is not None
        ]
        return math.sqrt(math.fsum(error**2 for error in errors)) / self.n


@dataclass
class Row:
    """One metric of one eval, one pair of variants."""

    eval_name: str
    base_sae: str
    new_sae: str
    column: Column
    base: Estimate
    new: Estimate
    p: float | None = None
    basis: str = NO_BASIS

    @property
    def delta(self) -> float:
        return self.new.mean - self.base.mean

    @property
    def relative_delta(self) -> float | None:
        base = self.base.mean
        if base == 0 or not math.isfinite(base) or not math.isfinite(self.delta):
            return None
        return self.delta / abs(base)

    @property
    def verdict(self) -> str:
        delta = self.delta
        if math.isnan(delta):
            return "n/a"
        if delta == 0:
            return "same"
        if self.column.higher_is_better is None:
            return "changed"
        return "better" if (delta > 0) == self.column.higher_is_better else "worse"

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < SIGNIFICANCE


@dataclass
class EvalComparison:
    eval_name: str
    rows: list[Row]
    provenance: str
    """What the two sides share (eval version and config), or why it is unknown."""


@dataclass
class Comparison:
    evals: list[EvalComparison]
    pairs: list[tuple[str, str]]
    """(base variant, new variant) compared."""
    runs: dict[str, dict[str, list[str]]]
    """side -> variant -> SAE names (its seeds) that were compared."""
    setups: list[str]
    not_compared: list[str]
    """What exists on only one side (or declares no metrics), one line each."""
    skipped: list[str] = field(default_factory=list)


# --- choosing what to compare --------------------------------------------------------------------------------


def _by_variant(found: RecordSet) -> dict[str, dict[str, list[Loaded]]]:
    grouped: dict[str, dict[str, list[Loaded]]] = {}
    for loaded in sorted(found.records, key=lambda item: item.sae.name):
        grouped.setdefault(loaded.sae.variant, {}).setdefault(loaded.eval_name, []).append(loaded)
    return grouped


def _pairs(base: dict[str, dict[str, list[Loaded]]], new: dict[str, dict[str, list[Loaded]]]) -> list[tuple[str, str]]:
    # One variant a side is "SAE A against SAE B", whatever their names; otherwise like is matched with like.
    if len(base) == 1 and len(new) == 1:
        return [(next(iter(base)), next(iter(new)))]
    pairs = [(variant, variant) for variant in sorted(base.keys() & new.keys())]
    if not pairs:
        raise UsageError(
            f"BASE and NEW share no SAE variant (BASE: {', '.join(sorted(base))}; NEW: {', '.join(sorted(new))})",
            "compare like-named SAEs, or narrow each side to one variant with --base-sae/--new-sae to compare "
            "across names",
        )
    return pairs


def _choose_metrics(
    declarations: dict[str, dict[str, MetricInfo]],
    present: set[str],
    evals: Sequence[str] | None,
    metrics: Sequence[str] | None,
    all_metrics: bool,
) -> dict[str, list[Column]]:
    """eval -> the metrics to show: the named ones (`eval.label`), every declared one, or the headline ones."""
    columns = {
        eval_name: [Column(eval_name, key, info.label, info.higher_is_better, info.description) for key, info in d.items()]
        for eval_name, d in declarations.items()
    }  # fmt: skip
    if evals:
        refuse_unknown("--evals", evals, present, why="which neither side has results of",
                       fix=f"choose among: {', '.join(sorted(present))}")  # fmt: skip
        columns = {name: found for name, found in columns.items() if name in evals}
    if metrics:
        by_name = {column.name: column for found in columns.values() for column in found}
        refuse_unknown("--metrics", metrics, by_name, why="which no loaded result declares",
                       fix=f"name them as eval.label, e.g. {next(iter(by_name), 'core.l0')} (`table --list-metrics` lists them)")  # fmt: skip
        chosen: dict[str, list[Column]] = {}
        for name in dict.fromkeys(metrics):
            chosen.setdefault(by_name[name].eval_name, []).append(by_name[name])
        return chosen
    if all_metrics:
        return columns
    headline = {(name, key) for name, d in declarations.items() for key, info in d.items() if info.headline}
    return {name: [c for c in found if (name, c.key) in headline] for name, found in columns.items()}


def _refuse_incomparable(eval_name: str, sides: dict[str, list[Loaded]]) -> str:
    """A UsageError when the records of one eval differ in eval version or config; else what they share."""
    unknown = [loaded.path for records in sides.values() for loaded in records if loaded.record.provenance is None]
    for attribute, what in (("eval_version", "eval version"), ("config_hash", "config hash")):
        seen: dict[tuple[str, str], str] = {}
        for side, records in sides.items():
            for loaded in records:
                if loaded.record.provenance is not None:
                    value = str(getattr(loaded.record.provenance, attribute))
                    seen.setdefault((side, value), str(loaded.path))
        if len({value for _, value in seen}) > 1:
            found = "; ".join(f"{what} {value} in {side} (e.g. {path})" for (side, value), path in seen.items())
            raise UsageError(
                f"{eval_name}: the results differ in {what} ({found}), so their numbers are not comparable",
                f"rerun one side with the same eval version and config "
                f"(python -m tsae_evals run --evals {eval_name} ...), or leave {eval_name} out with --evals",
            )
    known = next(
        (loaded.record.provenance for records in sides.values() for loaded in records if loaded.record.provenance),
        None,
    )
    shared = f"eval version {known.eval_version}, config {known.config_hash}" if known is not None else ""
    if unknown:
        note = f"provenance unknown for {len(unknown)} file(s) SAE-Bench wrote itself (e.g. {unknown[0]}): eval "
        note += "version and config not checked"
        return f"{shared}; {note}" if shared else note
    return shared


# --- the numbers ---------------------------------------------------------------------------------------------


def _confidence(loaded: Loaded) -> float:
    value = loaded.record.eval_config.get("confidence")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    return DEFAULT_CONFIDENCE


def _estimate(records: list[Loaded], key: str, interval: tuple[str, str] | None) -> Estimate:
    estimate = Estimate([])
    for loaded in records:
        numbers = loaded.numbers()
        if key not in numbers:
            continue
        estimate.values.append(numbers[key])
        bounds = None
        if interval is not None:
            low, high = numbers.get(interval[0]), numbers.get(interval[1])
            if low is not None and high is not None and math.isfinite(low) and math.isfinite(high) and low <= high:
                bounds = (low, high)
        estimate.intervals.append(bounds)
        estimate.confidences.append(_confidence(loaded))
    return estimate


def welch_p(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided p of Welch's t-test (unequal variances)."""
    import warnings

    from scipy.stats import ttest_ind

    with warnings.catch_warnings():
        # Seeds that agree to every digit on one side trip scipy's precision warning; the other side's spread
        # still carries the test, and the table says what it rests on.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(new, base, equal_var=False).pvalue)


def _test(row: Row) -> tuple[float | None, str]:
    """p and what it rests on; None where the data do not allow a test (never a made-up p)."""
    base, new = row.base, row.new
    seeds = f"{base.n} vs {new.n} runs"
    if not base.values or not new.values:
        return None, f"not in {'BASE' if not base.values else 'NEW'}'s records"
    if not math.isfinite(row.delta):
        return None, "NaN: no test"
    if base.n >= 2 and new.n >= 2:
        if base.sd == 0 and new.sd == 0:
            return None, f"seeds ({seeds}), no spread on either side: no test"
        return welch_p(base.values, new.values), f"seeds ({seeds}), Welch t"
    base_se, new_se = base.se_from_intervals, new.se_from_intervals
    if base_se is not None and new_se is not None:
        se = math.hypot(base_se, new_se)
        if se == 0:
            return None, "intervals of zero width: no test"
        z = row.delta / se
        return math.erfc(abs(z) / math.sqrt(2)), f"intervals ({seeds}), z; eval noise only, not seeds"
    return None, f"{NO_BASIS} ({seeds})"


def build_comparison(
    base: RecordSet,
    new: RecordSet,
    *,
    evals: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    all_metrics: bool = False,
    allow_mixed: bool = False,
) -> Comparison:
    """Pair BASE's and NEW's variants (by name, or the one against the other when each side holds one), then
    compare every chosen metric of every eval both sides of a pair have."""
    if {loaded.path.resolve() for loaded in base.records} == {loaded.path.resolve() for loaded in new.records}:
        raise UsageError(
            "BASE and NEW are the same result files",
            "pick different files, or one variant a side from one folder with --base-sae/--new-sae",
        )
    both = RecordSet(base.records + new.records)
    both.refuse_mixed(allow_mixed)
    grouped = {"BASE": _by_variant(base), "NEW": _by_variant(new)}
    pairs = _pairs(grouped["BASE"], grouped["NEW"])
    declarations = both.declarations()
    chosen = _choose_metrics(declarations, {loaded.eval_name for loaded in both.records}, evals, metrics, all_metrics)

    not_compared = []
    paired = {"BASE": {b for b, _ in pairs}, "NEW": {n for _, n in pairs}}
    for side in SIDES:
        for variant in sorted(grouped[side].keys() - paired[side]):
            not_compared.append(f"{variant}: only in {side} ({', '.join(sorted(grouped[side][variant]))})")
    for base_variant, new_variant in pairs:
        base_evals, new_evals = grouped["BASE"][base_variant], grouped["NEW"][new_variant]
        for side, mine, other, variant in (
            ("BASE", base_evals, new_evals, base_variant),
            ("NEW", new_evals, base_evals, new_variant),
        ):
            alone = sorted(name for name in mine.keys() - other.keys() if not evals or name in evals)
            if alone:
                not_compared.append(f"{', '.join(alone)}: only in {side} for {variant}")
        undeclared = sorted(
            name for name in (base_evals.keys() & new_evals.keys()) - declarations.keys() if not evals or name in evals
        )
        if undeclared:  # SAE-Bench's own files declare nothing, and no record of ours lent them declarations
            not_compared.append(f"{', '.join(undeclared)}: no metric declarations (files SAE-Bench wrote itself)")

    compared = []
    for eval_name in sorted(chosen):
        eval_pairs = [(b, n) for b, n in pairs if eval_name in grouped["BASE"][b] and eval_name in grouped["NEW"][n]]
        if not eval_pairs or not chosen[eval_name]:
            continue
        sides = {
            "BASE": [loaded for b, _ in eval_pairs for loaded in grouped["BASE"][b][eval_name]],
            "NEW": [loaded for _, n in eval_pairs for loaded in grouped["NEW"][n][eval_name]],
        }
        provenance = _refuse_incomparable(eval_name, sides)
        rows = []
        for base_variant, new_variant in eval_pairs:
            for column in chosen[eval_name]:
                interval = declarations[eval_name][column.key].interval
                row = Row(
                    eval_name,
                    base_variant,
                    new_variant,
                    column,
                    _estimate(grouped["BASE"][base_variant][eval_name], column.key, interval),
                    _estimate(grouped["NEW"][new_variant][eval_name], column.key, interval),
                )
                if not row.base.values and not row.new.values:  # optional metric neither side computed
                    continue
                row.p, row.basis = _test(row)
                rows.append(row)
        compared.append(EvalComparison(eval_name, rows, provenance))
    if not compared:
        raise UsageError(
            "BASE and NEW have no eval in common for the paired SAEs"
            + (f" ({'; '.join(not_compared)})" if not_compared else ""),
            "compare results of the same evals (see --evals)",
        )

    runs: dict[str, dict[str, list[str]]] = {side: {} for side in SIDES}
    for side, index in (("BASE", 0), ("NEW", 1)):
        for pair in pairs:
            variant = pair[index]
            names = {loaded.sae.name for records in grouped[side][variant].values() for loaded in records}
            runs[side][variant] = sorted(names)
    return Comparison(
        compared,
        pairs,
        runs,
        [str(key) for key in both.data_keys()],
        not_compared,
        list(dict.fromkeys([*base.skipped, *new.skipped])),
    )


# --- output --------------------------------------------------------------------------------------------------


def _cell(estimate: Estimate) -> str:
    if not estimate.values:
        return ""
    text = format_value(estimate.mean)
    if estimate.sd is not None:
        return f"{text} ± {format_value(estimate.sd)}"
    bounds = estimate.intervals[0] if estimate.n == 1 and estimate.intervals else None
    if bounds is not None:
        return f"{text} [{format_value(bounds[0])}, {format_value(bounds[1])}]"
    return text


def _signed(value: float) -> str:
    text = format_value(value)
    return f"+{text}" if math.isfinite(value) and value > 0 else text


def _p(row: Row) -> str:
    if row.p is None:
        return ""
    return f"{row.p:.2g}" + ("*" if row.significant else "")


def _pair_label(base: str, new: str) -> str:
    return base if base == new else f"{base} → {new}"


LEGEND = (
    "Δ = new − base, rel Δ = Δ / |base|; ↑/↓: higher/lower is better (`changed`: the metric has no better side). "
    "base and new: the mean over an SAE's seeds ± their SD, or one run's value [its interval]. p: Welch's t-test "
    "over seeds where both sides have two or more, else a z-test from the eval's own intervals where both have them "
    "(measurement noise only: it says nothing of another training seed); * p < 0.05. No p: the data allow no test."
)


def to_markdown(comparison: Comparison, sources: dict[str, str] | None = None, title: str = "Comparison") -> str:
    """A table per eval; `sources` (side -> what was given for it) is named beside each side's SAEs."""
    lines = [f"# {title}", ""]
    for side in SIDES:
        described = [
            f"{variant} ({', '.join(names)})" if names != [variant] else variant
            for variant, names in comparison.runs[side].items()
        ]
        source = f" from {sources[side]}" if sources and side in sources else ""
        lines.append(f"- {side}: {'; '.join(described)}{source}")
    lines += [f"- Measured on {'; '.join(comparison.setups)}.", "", LEGEND, ""]
    several = len(comparison.pairs) > 1
    header = ["sae"] * several + ["metric", "base", "new", "Δ", "rel Δ", "verdict", "p", "basis"]
    for compared in comparison.evals:
        lines += [f"## {compared.eval_name}", ""]
        if compared.provenance:
            lines += [compared.provenance[0].upper() + compared.provenance[1:] + ".", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in compared.rows:
            relative = row.relative_delta
            cells = [_pair_label(row.base_sae, row.new_sae)] * several + [
                f"{row.column.label} {row.column.arrow}".strip(),
                _cell(row.base),
                _cell(row.new),
                _signed(row.delta) if row.base.values and row.new.values else "",
                f"{relative:+.1%}" if relative is not None else "",
                row.verdict,
                _p(row),
                row.basis,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if comparison.not_compared:
        lines += ["Not compared:", *(f"- {line}" for line in comparison.not_compared)]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(comparison: Comparison) -> str:
    """Full precision, one row per (eval, pair, metric)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["eval", "base_sae", "new_sae", "metric", "key", "direction", "base", "base_sd", "base_n", "new", "new_sd",
         "new_n", "delta", "rel_delta", "verdict", "p", "significant", "basis", "provenance"]
    )  # fmt: skip
    for compared in comparison.evals:
        for row in compared.rows:
            writer.writerow(
                [row.eval_name, row.base_sae, row.new_sae, row.column.label, row.column.key,
                 direction_word(row.column.higher_is_better),
                 raw_value(row.base.mean if row.base.values else None), raw_value(row.base.sd), row.base.n,
                 raw_value(row.new.mean if row.new.values else None), raw_value(row.new.sd), row.new.n,
                 raw_value(row.delta if row.base.values and row.new.values else None), raw_value(row.relative_delta),
                 row.verdict, raw_value(row.p), row.significant, row.basis, compared.provenance]
            )  # fmt: skip
    return out.getvalue()
