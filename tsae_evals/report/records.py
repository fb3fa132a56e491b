"""Finding and reading result records for the report layer: bad files are reported by path and skipped, and a set
mixing models, hooks or datasets is refused unless asked for."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from tsae_evals.errors import UsageError
from tsae_evals.results import EvalRecord, MetricInfo, RecordError, read_record

RESULT_GLOB = "*_eval_results.json"
SEED_SUFFIX = re.compile(r"[-_]s(?:eed)?(\d+)$")
"""How a training seed shows in an SAE's name (the sweep names its SAEs `variant-sN`)."""


@dataclass(frozen=True)
class SaeKey:
    """Which SAE a record is about: its name, and its weights when the record knows them (two SAEs of one name in
    different folders are two SAEs)."""

    release: str
    sae_id: str
    weights_hash: str | None

    @property
    def name(self) -> str:
        return self.sae_id if self.release == "local" else f"{self.release}:{self.sae_id}"

    @property
    def variant(self) -> str:
        """The name without its seed suffix: seeds of one variant share it."""
        return SEED_SUFFIX.sub("", self.name)


@dataclass(frozen=True)
class DataKey:
    """What the numbers were measured on; records of different data keys are not comparable."""

    model: str
    hook_name: str
    dataset: str

    def __str__(self) -> str:
        return f"model {self.model}, hook {self.hook_name}, dataset {self.dataset}"


@dataclass
class Loaded:
    """One readable record and where it came from."""

    path: Path
    record: EvalRecord

    @property
    def eval_name(self) -> str:
        return self.record.eval_type_id

    @property
    def sae(self) -> SaeKey:
        provenance = self.record.provenance
        return SaeKey(
            self.record.sae_lens_release_id,
            self.record.sae_lens_id,
            provenance.sae_weights_hash if provenance is not None else None,
        )

    @property
    def data(self) -> DataKey:
        provenance = self.record.provenance
        if provenance is not None:
            return DataKey(provenance.model, provenance.hook_name, provenance.dataset)
        cfg = self.record.sae_cfg_dict
        metadata = cfg.get("metadata") or {}
        model = metadata.get("model_name") or cfg.get("model_name") or "unknown"
        hook = metadata.get("hook_name") or cfg.get("hook_name") or "unknown"
        dataset = self.record.eval_config.get("dataset_name") or "unknown (SAE-Bench file)"
        return DataKey(str(model), str(hook), str(dataset))

    @property
    def architecture(self) -> str:
        """The most specific kind the SAE's config names: our training architecture (`control_relu`, `random`,
        `pca`...) before sae-lens' class id."""
        cfg = self.record.sae_cfg_dict
        metadata = cfg.get("metadata") or {}
        for value in (metadata.get("tsae_arch"), cfg.get("architecture"), metadata.get("training_architecture")):
            if value:
                return str(value)
        return "unknown"

    def numbers(self) -> dict[str, float]:
        """Flat `category.metric` -> finite-or-NaN float, for the metrics that are numbers."""
        found = {}
        for key, value in self.record.metrics().items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[key] = float(value)
        return found


@dataclass
class RecordSet:
    """Readable records, and one line per file that was skipped (path: why)."""

    records: list[Loaded] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def data_keys(self) -> list[DataKey]:
        return list(dict.fromkeys(loaded.data for loaded in self.records))

    def declarations(self) -> dict[str, dict[str, MetricInfo]]:
        """eval -> `category.metric` -> declaration, merged over every record of that eval. A file SAE-Bench wrote
        itself has none; it borrows those of our records of the same eval."""
        merged: dict[str, dict[str, MetricInfo]] = {}
        for loaded in sorted(self.records, key=lambda item: -item.record.datetime_epoch_millis):
            declared = merged.setdefault(loaded.eval_name, {})
            for key, info in loaded.record.metric_info.items():
                declared.setdefault(key, info)
        return merged

    def refuse_mixed(self, allow_mixed: bool) -> None:
        """A UsageError when the records were measured on more than one model, hook or dataset."""
        keys = self.data_keys()
        if len(keys) <= 1 or allow_mixed:
            return
        examples = []
        for key in keys:
            first = next(loaded.path for loaded in self.records if loaded.data == key)
            examples.append(f"{key} (e.g. {first})")
        raise UsageError(
            f"these results were measured on {len(keys)} different setups, whose numbers are not comparable: "
            + "; ".join(examples),
            "pass only one setup's results, or --allow-mixed to put them in one table anyway",
        )


def _files(paths: Iterable[Path]) -> Iterable[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(path.rglob(RESULT_GLOB))
        else:
            yield path


def load_records(paths: Sequence[Path]) -> RecordSet:
    """Every record under `paths` (folders searched recursively for SAE-Bench's `*_eval_results.json`, files read
    as given). A folder with no results, or a path that does not exist, is a UsageError; an unreadable file is
    skipped and named. Where one SAE has two records of one eval, the newer stands and the older is named."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}", "pass result folders such as eval_results/")
    found = RecordSet()
    newest: dict[tuple[SaeKey, str], Loaded] = {}
    for path in _files(paths):
        try:
            loaded = Loaded(path, read_record(path))
        except RecordError as exc:
            found.skipped.append(str(exc))
            continue
        key = (loaded.sae, loaded.eval_name)
        previous = newest.get(key)
        if previous is None:
            newest[key] = loaded
            continue
        if previous.path.resolve() == path.resolve():  # one file named twice
            continue
        older, newer = sorted((previous, loaded), key=lambda item: item.record.datetime_epoch_millis)
        newest[key] = newer
        found.skipped.append(f"{older.path}: superseded by the newer {newer.path} ({key[1]} on {key[0].name})")
    found.records = list(newest.values())
    if not found.records:
        where = ", ".join(map(str, paths))
        problem = f"no readable result records under {where}"
        if found.skipped:
            problem += f" ({len(found.skipped)} unreadable: {found.skipped[0]})"
        raise UsageError(problem, "point at folders that `python -m tsae_evals run` wrote (e.g. eval_results/)")
    return found


def select_saes(found: RecordSet, patterns: Sequence[str] | None, where: str, option: str) -> RecordSet:
    """The records whose SAE name matches one of `patterns` (fnmatch); all without patterns. Matching nothing is a
    UsageError that lists the names there are."""
    if not patterns:
        return found
    kept = [loaded for loaded in found.records if any(fnmatch(loaded.sae.name, p) for p in patterns)]
    if not kept:
        names = sorted({loaded.sae.name for loaded in found.records})
        raise UsageError(
            f"no SAE in {where} matches {option} {' '.join(patterns)} (there: {', '.join(names)})",
            f"match SAE names as the records spell them, e.g. {option} '{names[0].split('-')[0]}-*'",
        )
    return RecordSet(kept, list(found.skipped))


def refuse_unknown(option: str, names: Iterable[str], known: Iterable[str], *, why: str, fix: str) -> None:
    """A UsageError naming every value of `option` not in `known` (e.g. an eval no loaded result is from)."""
    known = set(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"{option} names {', '.join(unknown)}, {why}", fix)


def describe_skipped(skipped: Sequence[str]) -> str:
    return "\n".join(f"skipped {line}" for line in skipped)
