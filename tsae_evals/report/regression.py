"""The regression check: does a result move beyond the noise measured for it?

A tolerance is measured, never guessed: the `tolerances` command reruns the evals once per seed (a seed reorders
the documents, so each seed reads other token windows, and reseeds every null and baseline) and keeps, per
metric, `tolerance = k × SD` of the per-seed values (`Tolerances`). `check` pairs baseline and current records
by (SAE, eval), refuses pairs whose numbers do not measure the same thing (other eval version, config, model,
hook, dataset, windows or seed), and fails a metric whose change in its worse direction exceeds its tolerance
plus `abs_floor` (both directions with `two_sided`, for golden results where any shift means the computation
changed). Reads records only: no torch here.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import tsae_evals
from tsae_evals.errors import UsageError
from tsae_evals.report.records import Loaded, RecordSet, SaeKey
from tsae_evals.results import direction_arrow, write_json_atomic

TOLERANCES_SCHEMA_VERSION = 1
"""Layout of the tolerance file."""
DEFAULT_K = 3.0
"""Tolerance = k × SD over reseeded runs. 3 keeps a false alarm rare (about 0.3% per metric for normal noise)
while a shift of a few SDs still fails."""
MIN_SEEDS = 3
"""Two values give an SD with one degree of freedom: too unstable to set a threshold from."""
TOLERANCES_FILE = "tolerances.json"
"""The name `check` looks for inside a baseline folder."""
COMPARED_FIELDS = (
    "eval_version",
    "config_hash",
    "model",
    "hook_name",
    "dataset",
    "n_windows",
    "context_size",
    "prepend_bos",
    "seed",
)
"""Provenance fields that must match between a baseline record and the current one: they decide what the numbers
measure (the SAE's weights aside: a new SAE against a committed baseline is the point of the check)."""
SETUP_FIELDS = ("model", "hook_name", "dataset", "n_windows", "context_size", "prepend_bos")
"""What the tolerance file must share with the baseline: noise measured on other data or other window counts is
not the noise of these numbers."""
FLOOR_ABS = 1e-9
FLOOR_REL = 1e-6


def abs_floor(baseline: float) -> float:
    """Float arithmetic noise, not a noise estimate: the same computation on another CPU, BLAS or thread count
    rounds differently (another summation order), which moves a float32 result in its last digits. Added to every
    tolerance so that a metric whose SD over seeds is 0 (counts, sizes: it does not depend on the seed) survives
    being recomputed on another machine; far below any real change.

    It is relative to the metric's own value, so a metric computed as a small difference of large numbers (a loss
    delta) can move by more on another machine: on the golden run, ATen's AVX2 or scalar kernels instead of
    AVX-512 moved 12 such metrics past the floor (by up to 5e-4 of their value), every one of them seed-dependent
    and far inside its k × SD."""
    return FLOOR_ABS + FLOOR_REL * abs(baseline)


# --- the tolerance file --------------------------------------------------------------------------------------


class MeasuredEval(BaseModel):
    """Which version and config of an eval the noise was measured under."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    eval_version: int
    """Registered eval version."""
    config_hash: str
    """Hash of the eval config (results.config_hash)."""


class MetricNoise(BaseModel):
    """One metric's spread over the reseeded runs, and the tolerance it gives."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    label: str
    """The metric's label (its key where the record declares none)."""
    higher_is_better: bool | None
    """Direction as declared; None: no better side (only a two-sided check fails it)."""
    headline: bool = False
    """A headline metric of its eval."""
    values: list[float | None]
    """Value per seed, in the order of `Tolerances.seeds` (None: not a number in that run)."""
    n: int
    """Finite values among them: what the SD is computed from."""
    sd: float | None
    """Sample SD (n - 1) of the finite values; None with fewer than two."""
    tolerance: float | None
    """k × sd; None when sd is None (the metric is then reported unchecked)."""


class Tolerances(BaseModel):
    """How far each metric may move before `check` calls it a regression, and how that was measured."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    schema_version: int = TOLERANCES_SCHEMA_VERSION
    """Layout of this file (TOLERANCES_SCHEMA_VERSION)."""
    k: float
    """Tolerance = k × SD over the seeds."""
    seeds: list[int]
    """Run seeds the evals were repeated with (each: another document order, so other windows, and other nulls)."""
    sae: str
    """The SAE the noise was measured on."""
    sae_weights_hash: str | None
    """Its weights."""
    model: str
    """Model the activations came from."""
    hook_name: str
    """Hook the SAE reads."""
    dataset: str
    """Text source of the windows."""
    n_windows: int
    """Token windows per run."""
    context_size: int
    """Tokens per window."""
    prepend_bos: bool
    """Whether windows start with BOS."""
    evals: dict[str, MeasuredEval]
    """Eval name -> the version and config measured."""
    metrics: dict[str, dict[str, MetricNoise]]
    """Eval name -> `category.metric` -> its noise and tolerance."""
    tsae_evals_version: str = Field(default_factory=lambda: tsae_evals.__version__)
    """Version of tsae_evals that measured it."""

    def setup(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETUP_FIELDS}

    def describe(self) -> str:
        seeds = ",".join(map(str, self.seeds))
        return (
            f"k={self.k:g} × SD over seeds {seeds} ({self.sae} on {self.model} {self.hook_name}, "
            f"{self.n_windows} windows × {self.context_size} tokens of {self.dataset})"
        )


def check_measurement(seeds: Sequence[int], k: float) -> None:
    """Refuse a measurement that could not give a usable SD, before anything runs."""
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {','.join(map(str, seeds))} repeats a seed", "name each seed once")
    if len(seeds) < MIN_SEEDS:
        raise UsageError(
            f"{len(seeds)} seed(s) cannot measure noise: an SD needs at least {MIN_SEEDS} runs to mean anything",
            f"pass {MIN_SEEDS} or more seeds, e.g. --seeds 0,1,2,3,4",
        )
    if not (math.isfinite(k) and k > 0):
        raise UsageError(f"--k {k} is not a positive number of SDs", f"pass e.g. --k {DEFAULT_K:g}")


def build_tolerances(runs: Mapping[int, RecordSet], k: float = DEFAULT_K) -> Tolerances:
    """Tolerances from one RecordSet per seed (seed -> the records that run wrote), all of one SAE and one setup."""
    seeds = list(runs)
    check_measurement(seeds, k)
    saes = {loaded.sae for found in runs.values() for loaded in found.records}
    if len(saes) != 1:
        held = ", ".join(sorted(sae.name for sae in saes)) or "none"
        raise UsageError(f"tolerances are measured on one SAE; these runs hold {held}", "measure one SAE")
    by_seed: dict[int, dict[str, Loaded]] = {}
    for seed, found in runs.items():
        by_seed[seed] = {loaded.eval_name: loaded for loaded in found.records}
    eval_names = list(dict.fromkeys(name for records in by_seed.values() for name in records))
    incomplete = {seed: sorted(set(eval_names) - set(records)) for seed, records in by_seed.items()}
    incomplete = {seed: names for seed, names in incomplete.items() if names}
    if incomplete:
        seed, absent = next(iter(incomplete.items()))
        raise UsageError(f"seed {seed} has no result of {', '.join(absent)}", "rerun so that every seed has every eval")

    first = next(iter(by_seed.values()))
    provenance = _provenance(next(iter(first.values())))
    evals: dict[str, MeasuredEval] = {}
    metrics: dict[str, dict[str, MetricNoise]] = {}
    for eval_name in eval_names:
        loaded_runs = [by_seed[seed][eval_name] for seed in seeds]
        measured = {(p.eval_version, p.config_hash) for p in map(_provenance, loaded_runs)}
        setups = {tuple(getattr(_provenance(loaded), name) for name in SETUP_FIELDS) for loaded in loaded_runs}
        if len(measured) != 1 or setups != {tuple(getattr(provenance, name) for name in SETUP_FIELDS)}:
            raise UsageError(
                f"the seeds' {eval_name} results differ in eval version, config or data",
                "measure every seed with one eval version, config and dataset",
            )
        version, config = measured.pop()
        evals[eval_name] = MeasuredEval(eval_version=version, config_hash=config)
        metrics[eval_name] = _metric_noise(loaded_runs, k)
    return Tolerances(
        k=k,
        seeds=seeds,
        sae=next(iter(saes)).name,
        sae_weights_hash=next(iter(saes)).weights_hash,
        evals=evals,
        metrics=metrics,
        **{name: getattr(provenance, name) for name in SETUP_FIELDS},
    )


def _provenance(loaded: Loaded) -> Any:
    if loaded.record.provenance is None:
        raise UsageError(f"{loaded.path} has no provenance", "measure tolerances from records that `run` wrote")
    return loaded.record.provenance


def _metric_noise(loaded_runs: list[Loaded], k: float) -> dict[str, MetricNoise]:
    declared = loaded_runs[0].record.metric_info
    numbers = [loaded.numbers() for loaded in loaded_runs]
    # declaration order first (how the eval presents them), then undeclared numbers in record order
    keys = list(dict.fromkeys([*(key for key in declared if any(key in n for n in numbers)), *numbers[0]]))
    keys += [key for n in numbers[1:] for key in n if key not in keys]
    found = {}
    for key in keys:
        values = [n.get(key) for n in numbers]
        finite = [value for value in values if value is not None and math.isfinite(value)]
        # statistics.stdev works in exact fractions: identical values give exactly 0.0, never a rounding residue
        sd = statistics.stdev(finite) if len(finite) >= 2 else None
        info = declared.get(key)
        found[key] = MetricNoise(
            label=info.label if info is not None else key,
            higher_is_better=info.higher_is_better if info is not None else None,
            headline=info.headline if info is not None else False,
            values=values,
            n=len(finite),
            sd=sd,
            tolerance=k * sd if sd is not None else None,
        )
    return found


def write_tolerances(path: Path, tolerances: Tolerances) -> None:
    write_json_atomic(path, tolerances.model_dump(mode="python"))


def read_tolerances(path: Path) -> Tolerances:
    """The tolerance file at `path`; a UsageError says what is wrong with it."""
    fix = "measure it again with `python -m tsae_evals tolerances` (see its --help)"
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"tolerance file {path} is not readable JSON ({exc})", fix) from exc
    if not isinstance(raw, dict):
        raise UsageError(f"tolerance file {path} is not a tolerance file", fix)
    version = raw.get("schema_version")
    if isinstance(version, int) and version > TOLERANCES_SCHEMA_VERSION:
        raise UsageError(f"tolerance file {path} was written by a newer tsae_evals (schema {version})", "upgrade")
    try:
        return Tolerances.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise UsageError(f"tolerance file {path} is not a tolerance file ({where}: {first['msg']})", fix) from exc


# --- the check -----------------------------------------------------------------------------------------------

Status = Literal["pass", "fail"]


@dataclass
class MetricCheck:
    """One metric of one paired record: the verdict and why."""

    pair: str
    eval_name: str
    key: str
    label: str
    higher_is_better: bool | None
    baseline: float
    current: float | None
    """None: missing from the current record."""
    sd: float | None
    tolerance: float | None
    """k × SD (None: missing metric, judged without one)."""
    status: Status
    reason: str

    @property
    def delta(self) -> float | None:
        if self.current is None or not (math.isfinite(self.current) and math.isfinite(self.baseline)):
            return None
        return self.current - self.baseline

    @property
    def name(self) -> str:
        return f"{self.label} {direction_arrow(self.higher_is_better)}".rstrip()


@dataclass
class PairedRecords:
    """A baseline SAE and the current SAE checked against it."""

    baseline: SaeKey
    current: SaeKey

    @property
    def label(self) -> str:
        if self.baseline.name == self.current.name:
            return self.baseline.name
        return f"{self.baseline.name} → {self.current.name}"

    @property
    def weights_note(self) -> str:
        before, after = self.baseline.weights_hash, self.current.weights_hash
        if before is None or after is None:
            return "weights unknown"
        return "same weights" if before == after else f"other weights: {before[:8]} → {after[:8]}"


@dataclass
class CheckReport:
    """Every verdict of one check; `exit_code` and `to_text` are what the CLI prints and returns."""

    two_sided: bool
    tolerances: Tolerances
    pairs: list[PairedRecords] = field(default_factory=list)
    checks: list[MetricCheck] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Whole SAEs or evals of the baseline with no current result (failures)."""
    not_comparable: list[str] = field(default_factory=list)
    """Pairs refused: their numbers do not measure the same thing."""
    unchecked: dict[str, list[str]] = field(default_factory=dict)
    """`pair: eval` -> metrics of the baseline with no usable tolerance (not judged)."""
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Unreadable files, by path and why."""

    @property
    def failures(self) -> list[MetricCheck]:
        return [item for item in self.checks if item.status == "fail"]

    @property
    def n_unchecked(self) -> int:
        return sum(len(keys) for keys in self.unchecked.values())

    @property
    def exit_code(self) -> int:
        """2: something could not be compared (a result, not a pass); 1: a regression or a missing result."""
        if self.not_comparable:
            return 2
        return 1 if self.failures or self.missing else 0

    def summary(self) -> str:
        mode = "two-sided" if self.two_sided else "one-sided"
        unchecked = f"; {self.n_unchecked} unchecked (no measured tolerance)" if self.n_unchecked else ""
        if self.not_comparable:
            return (
                f"NOT COMPARABLE: {len(self.not_comparable)} refused comparison(s), see above; "
                f"{len(self.failures)} failure(s) among the {len(self.checks)} metric(s) that could be compared"
            )
        if self.failures or self.missing:
            kinds = [f"{len(self.failures)} of {len(self.checks)} metric(s) failed"]
            if self.missing:
                kinds.append(f"{len(self.missing)} result(s) missing")
            return f"FAIL ({mode}): " + ", ".join(kinds) + unchecked
        return f"PASS ({mode}): {len(self.checks)} metric(s) within tolerance" + unchecked

    def to_text(self) -> str:
        lines = [
            f"Tolerances: {self.tolerances.describe()}",
            f"Floor: {FLOOR_ABS:g} + {FLOOR_REL:g}·|baseline| added to each tolerance "
            "(float arithmetic across machines, not a noise estimate)",
            f"Mode: {'two-sided: any shift beyond tolerance fails' if self.two_sided else 'one-sided: only changes in the worse direction fail'}",
        ]
        lines += [f"skipped {line}" for line in self.skipped]
        for pair in self.pairs:
            rows = [item for item in self.checks if item.pair == pair.label]
            if not rows:
                continue
            lines += ["", f"== {pair.label} ({pair.weights_note})", *_table(rows)]
        for title, items in (("NOT COMPARABLE", self.not_comparable), ("MISSING", self.missing)):
            if items:
                lines += ["", *(f"{title}: {item}" for item in items)]
        if self.unchecked:
            lines.append("")
            for where, keys in self.unchecked.items():
                lines.append(f"unchecked (no measured tolerance): {where}: {', '.join(keys)}")
        if self.notes:
            lines += ["", *(f"note: {note}" for note in self.notes)]
        if self.failures:
            lines += ["", "Failed:", *_table(self.failures, with_pair=len(self.pairs) > 1)]
        lines += ["", self.summary()]
        return "\n".join(lines)


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:+.6g}" if signed else f"{value:.6g}"


def _table(rows: list[MetricCheck], with_pair: bool = False) -> list[str]:
    """One line per metric, except that a passing metric NaN on both sides (what the golden probes mostly give on
    a random model) is counted on one line per eval instead: hundreds of `nan nan` lines hide the ones that
    matter."""
    both_nan: dict[str, int] = {}
    shown = []
    for row in rows:
        if row.status == "pass" and row.reason == "both NaN":
            both_nan[row.eval_name] = both_nan.get(row.eval_name, 0) + 1
        else:
            shown.append(row)
    lines = _aligned(shown, with_pair)
    evals = list(dict.fromkeys(row.eval_name for row in rows))
    placed: list[str] = lines[:1]
    for eval_name in evals:
        placed += [line for line, row in zip(lines[1:], shown, strict=True) if row.eval_name == eval_name]
        if eval_name in both_nan:
            placed.append(f"  {eval_name}: {both_nan[eval_name]} more metric(s) NaN in baseline and current: PASS")
    return placed


def _aligned(rows: list[MetricCheck], with_pair: bool) -> list[str]:
    header = ["eval", "metric", "baseline", "current", "Δ", "tolerance", "result"]
    cells = [
        [
            f"{row.pair}: {row.eval_name}" if with_pair else row.eval_name,
            row.name,
            _number(row.baseline),
            _number(row.current),
            _number(row.delta, signed=True),
            "±" + _number(row.tolerance) if row.tolerance is not None else "-",
            f"{row.status.upper()} {row.reason}".rstrip(),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header) - 1)]
    right = {2, 3, 4, 5}  # numbers line up on their last digit

    def render(line: list[str]) -> str:
        cells = zip(line[:-1], widths, strict=True)  # the last column (the verdict) runs free
        parts = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(cells)]
        return "  " + "  ".join([*parts, line[-1]])

    return [render(header), *map(render, cells)]


def judge(baseline: float, current: float | None, noise: MetricNoise, two_sided: bool) -> tuple[Status, str] | None:
    """The verdict on one metric, or None when it cannot be judged (too few finite seed values for an SD)."""
    if current is None:
        return "fail", "missing from current results"
    if math.isnan(baseline) or math.isnan(current):
        if math.isnan(baseline) and math.isnan(current):
            return "pass", "both NaN"
        return "fail", "NaN in current only" if math.isnan(current) else "NaN in baseline only"
    if not (math.isfinite(baseline) and math.isfinite(current)):
        return ("pass", "equal") if baseline == current else ("fail", "infinite on one side")
    if noise.tolerance is None or noise.sd is None:
        return None
    allowed = noise.tolerance + abs_floor(baseline)
    delta = current - baseline
    size = f"{abs(delta) / noise.sd:.1f} SD" if noise.sd > 0 else f"{abs(delta):.3g} (SD 0 over seeds)"
    if two_sided:
        return ("fail", f"changed by {size}") if abs(delta) > allowed else ("pass", "")
    if noise.higher_is_better is None:
        return "pass", f"no better side (moved {size})" if abs(delta) > allowed else ""
    worse = -delta if noise.higher_is_better else delta
    if worse > allowed:
        return "fail", f"regressed by {size}"
    return "pass", f"improved by {size}" if -worse > allowed else ""


def _group(found: RecordSet) -> dict[SaeKey, dict[str, Loaded]]:
    grouped: dict[SaeKey, dict[str, Loaded]] = {}
    for loaded in found.records:
        grouped.setdefault(loaded.sae, {})[loaded.eval_name] = loaded
    return grouped


def _pairs(
    baseline: dict[SaeKey, dict[str, Loaded]], current: dict[SaeKey, dict[str, Loaded]], report: CheckReport
) -> list[PairedRecords]:
    """One SAE on each side: they pair whatever their names (a new SAE against a committed baseline); otherwise
    SAEs pair by name."""
    if len(baseline) == 1 and len(current) == 1:
        return [PairedRecords(next(iter(baseline)), next(iter(current)))]
    pairs = []
    for sae in baseline:
        namesakes = [other for other in current if other.name == sae.name]
        if not namesakes:
            report.missing.append(f"SAE {sae.name}: no current results (pass --sae to choose which SAEs to check)")
        elif len(namesakes) > 1:
            report.not_comparable.append(f"{sae.name}: {len(namesakes)} current SAEs of that name (other weights)")
        else:
            pairs.append(PairedRecords(sae, namesakes[0]))
    paired = {pair.current for pair in pairs}
    extra = sorted(sae.name for sae in current if sae not in paired)
    if extra:
        report.notes.append(f"not in the baseline, not checked: {', '.join(extra)}")
    return pairs


def _refusal(base: Loaded, cur: Loaded, tolerances: Tolerances) -> str | None:
    """Why these two records (and this tolerance file) cannot be compared, or None."""
    before, after = base.record.provenance, cur.record.provenance
    if before is None or after is None:
        side = base.path if before is None else cur.path
        return f"{side} has no provenance (written by SAE-Bench itself), so what it measured is unknown"
    differ = [
        f"{name} {getattr(before, name)} vs {getattr(after, name)}"
        for name in COMPARED_FIELDS
        if getattr(before, name) != getattr(after, name)
    ]
    if differ:
        return "baseline vs current: " + ", ".join(differ)
    measured = tolerances.evals.get(base.eval_name)
    if measured is None:
        return None
    differ = [
        f"{name} {getattr(measured, name)} vs {getattr(before, name)}"
        for name in ("eval_version", "config_hash")
        if getattr(measured, name) != getattr(before, name)
    ]
    differ += [
        f"{name} {value} vs {getattr(before, name)}"
        for name, value in tolerances.setup().items()
        if value != getattr(before, name)
    ]
    if differ:
        return (
            "tolerances measured under another setup than the baseline: "
            + ", ".join(differ)
            + " (tolerance vs baseline)"
        )
    return None


def check(baseline: RecordSet, current: RecordSet, tolerances: Tolerances, two_sided: bool = False) -> CheckReport:
    """Check every metric of every baseline record that the tolerance file covers against the current results."""
    report = CheckReport(two_sided=two_sided, tolerances=tolerances, skipped=[*baseline.skipped, *current.skipped])
    before_by_sae, after_by_sae = _group(baseline), _group(current)
    report.pairs = _pairs(before_by_sae, after_by_sae, report)
    for pair in report.pairs:
        after_evals = after_by_sae[pair.current]
        for eval_name, base in before_by_sae[pair.baseline].items():
            cur = after_evals.get(eval_name)
            if cur is None:
                report.missing.append(f"{pair.label}: no current {eval_name} result")
                continue
            refusal = _refusal(base, cur, tolerances)
            if refusal is not None:
                report.not_comparable.append(f"{pair.label}: {eval_name}: not comparable: {refusal}")
                continue
            _check_record(pair, base, cur, tolerances, two_sided, report)
        extra = sorted(set(after_evals) - set(before_by_sae[pair.baseline]))
        if extra:
            report.notes.append(f"{pair.label}: evals not in the baseline, not checked: {', '.join(extra)}")
    if not report.checks and not report.not_comparable and not report.missing:
        report.not_comparable.append(
            "nothing to check: the tolerance file covers none of the baseline's metrics "
            f"(it measured {', '.join(tolerances.evals) or 'no eval'}); measure tolerances for these evals"
        )
    return report


def _check_record(
    pair: PairedRecords, base: Loaded, cur: Loaded, tolerances: Tolerances, two_sided: bool, report: CheckReport
) -> None:
    before, after = base.numbers(), cur.numbers()
    measured = tolerances.metrics.get(base.eval_name, {})
    declared = base.record.metric_info
    unchecked = []
    for key, value in before.items():
        noise = measured.get(key)
        info = declared.get(key)
        verdict = judge(value, after.get(key), noise, two_sided) if noise is not None else None
        if verdict is None and key not in after:  # a metric that vanished fails whether or not it has a tolerance
            verdict = ("fail", "missing from current results")
        if verdict is None:
            unchecked.append(key)
            continue
        status, reason = verdict
        report.checks.append(
            MetricCheck(
                pair=pair.label,
                eval_name=base.eval_name,
                key=key,
                label=info.label if info is not None else noise.label if noise is not None else key,
                higher_is_better=noise.higher_is_better if noise is not None else None,
                baseline=value,
                current=after.get(key),
                sd=noise.sd if noise is not None else None,
                tolerance=noise.tolerance if noise is not None else None,
                status=status,
                reason=reason,
            )
        )
    if unchecked:
        report.unchecked[f"{pair.label}: {base.eval_name}"] = unchecked
