"""Find, check and load SAEs named on the command line.

`--sae` takes a sae-lens directory (`cfg.json` + `sae_weights.safetensors`) or `release:sae_id` from sae-lens's
pretrained directory. Cheap checks (files, JSON, architecture) run before any model is loaded, so a typo costs
seconds, not a model load.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsae_evals.errors import UsageError, unknown_name

if TYPE_CHECKING:
    from sae_lens import SAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


@dataclass(frozen=True)
class SAERef:
    """An SAE named on the command line, checked enough to load."""

    spec: str
    """What the user typed."""
    path: Path | None
    """The local sae-lens directory, or None for a pretrained `release:sae_id`."""
    release: str
    """SAE-Bench's `sae_lens_release_id`: the pretrained release, or `local` for a directory."""
    sae_id: str
    """SAE-Bench's `sae_lens_id`: the pretrained id, or the directory's name."""

    def weights_hash(self) -> str | None:
        """Hash of the weights file: whether a stored result still describes this SAE (None: not on disk)."""
        from tsae_evals.results import file_hash

        return file_hash(self.path / WEIGHTS_FILE) if self.path is not None else None

    @property
    def label(self) -> str:
        """A file-name-safe name, unique per SAE, used for result files and summary rows."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.release}_{self.sae_id}")


def split_sae_specs(values: list[str]) -> list[str]:
    """`--sae` is repeatable and comma-separated; keep order, drop duplicates. A value that is an existing path
    stays whole: a sweep's grid variants live in directories named like `consistency[window_size=8,coefficient=1]`."""
    specs = [
        part.strip()
        for value in values
        for part in ([value] if Path(value).expanduser().exists() else value.split(","))
        if part.strip()
    ]
    return list(dict.fromkeys(specs))


def known_architectures() -> list[str]:
    from sae_lens.registry import SAE_CLASS_REGISTRY

    import custom_saes  # noqa: F401  (registers the tsae_ architectures with sae-lens)

    return sorted(SAE_CLASS_REGISTRY)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def resolve_sae(spec: str) -> SAERef:
    """Check `spec` without loading weights: a readable sae-lens directory or a well-formed `release:id`."""
    path = Path(spec).expanduser()
    if path.exists() or ":" not in spec:
        return _resolve_directory(spec, path)
    release, _, sae_id = spec.partition(":")
    if not release or not sae_id:
        raise UsageError(
            f"malformed pretrained SAE {spec!r}",
            "write it as release:sae_id, e.g. gpt2-small-res-jb:blocks.8.hook_resid_pre",
        )
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise unknown_name("sae-lens release", release, directory, "see sae-lens's pretrained_saes.yaml for names")
    if sae_id not in directory[release].saes_map:
        raise UsageError(
            f"release {release!r} has no SAE {sae_id!r}",
            f"pick one of its ids, e.g. {next(iter(directory[release].saes_map))}",
        )
    if _hub_offline():
        raise UsageError(
            f"SAE {spec!r} must be downloaded from the Hugging Face hub, but HF_HUB_OFFLINE is set",
            "unset HF_HUB_OFFLINE on a machine with hub access, or pass a local sae-lens directory",
        )
    return SAERef(spec=spec, path=None, release=release, sae_id=sae_id)


def _resolve_directory(spec: str, path: Path) -> SAERef:
    if not path.is_dir():
        raise UsageError(
            f"SAE directory {spec!r} does not exist",
            "pass a sae-lens directory (cfg.json + sae_weights.safetensors) or release:sae_id",
        )
    missing = [name for name in (CFG_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
    if missing:
        raise UsageError(
            f"SAE directory {spec!r} lacks {' and '.join(missing)}",
            "save the SAE with sae-lens (`sae.save_model(dir)`) or `python -m tsae_evals train`",
        )
    try:
        cfg = json.loads((path / CFG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{path / CFG_FILE} is not valid JSON ({exc})", "re-save the SAE; the config file is corrupt"
        ) from exc
    if not isinstance(cfg, dict) or "d_in" not in cfg or "d_sae" not in cfg:
        raise UsageError(f"{path / CFG_FILE} lacks d_in/d_sae", "re-save the SAE with sae-lens so cfg.json is complete")
    architecture = cfg.get("architecture", "standard")
    architectures = known_architectures()
    if architecture not in architectures:
        raise unknown_name(
            "SAE architecture",
            str(architecture),
            architectures,
            f"use one that sae-lens or custom_saes registers ({', '.join(architectures)})",
            where=f" in {path / CFG_FILE}",
        )
    hook_name = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
    if not hook_name:
        raise UsageError(
            f"{path / CFG_FILE} records no hook_name", "add metadata.hook_name (e.g. blocks.6.hook_resid_post)"
        )
    return SAERef(spec=spec, path=path, release="local", sae_id=path.resolve().name)


def load_sae(ref: SAERef, device: str = "cpu") -> SAE[Any]:
    """Load the SAE's weights; corrupt files become a UsageError naming the directory."""
    from sae_lens import SAE

    import custom_saes  # noqa: F401

    if ref.path is None:
        try:
            return SAE.from_pretrained(ref.release, ref.sae_id, device=device)
        except OSError as exc:
            raise UsageError(
                f"could not download SAE {ref.spec!r} from the Hugging Face hub ({type(exc).__name__})",
                "check hub access, or pass a local sae-lens directory",
            ) from exc
    try:
        sae = SAE.load_from_disk(ref.path, device=device, converter=_sae_lens_6_aware_loader)
    except Exception as exc:  # safetensors, pydantic and torch each raise their own types for a corrupt file
        raise UsageError(
            f"cannot load the SAE in {ref.path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "the weights or config are corrupt or do not match each other; re-save the SAE",
        ) from exc
    return sae


def _sae_lens_6_aware_loader(path: Any, device: Any, cfg_overrides: Any = None) -> tuple[dict[str, Any], Any]:
    """sae-lens's disk loader, except that a 6.x-layout config (a `metadata` block) lacking `sae_lens_version`
    loads as 6.x: sae-lens would treat it as pre-6 and drop its metadata (hook name included)."""
    from sae_lens import __version__
    from sae_lens.loading.pretrained_sae_loaders import sae_lens_disk_loader

    cfg, state_dict = sae_lens_disk_loader(path, device, cfg_overrides=cfg_overrides)
    metadata = cfg.get("metadata")
    if isinstance(metadata, dict) and not (cfg.get("sae_lens_version") or metadata.get("sae_lens_version")):
        cfg["sae_lens_version"] = __version__
    return cfg, state_dict


def sae_hook_name(sae: SAE[Any]) -> str:
    hook_name = sae.cfg.metadata.hook_name
    if not hook_name:
        raise UsageError("the SAE's config records no hook_name", "add metadata.hook_name to its cfg.json")
    return str(hook_name)


def check_sae_fits_model(sae: SAE[Any], model: Any, label: str) -> None:
    """The SAE's hook must exist on the model and its d_in must equal the hook's width."""
    from tsae_evals.models import hook_width

    hook_name = sae_hook_name(sae)
    width = hook_width(model, hook_name)
    if width != sae.cfg.d_in:
        raise UsageError(
            f"SAE {label} has d_in {sae.cfg.d_in} but hook {hook_name} of model {model.cfg.model_name} is {width} wide",
            "evaluate it on the model it was trained on (--model), or fix hook_name/d_in in its cfg.json",
        )
