"""The `train --arch` registry: recipes register here, the `train` front-end (tsae_evals.training) looks them up.

A leaf: it imports nothing of custom_saes' architectures or of tsae_evals at run time, so an architecture file can
register its recipe without importing the application that runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from sae_lens import SAE
    from sae_lens.saes.sae import SAEMetadata

    from custom_saes.base import TsaeSAE
    from custom_saes.training.activations import ActivationSource
    from custom_saes.training.loop import Phase

PHASED_L1 = 3.0
"""Default L1 of the phased tsae_ ReLU-family recipes (unit-norm decoder rows throughout): measured to match the
sae-lens ReLU's L0 (137 vs 144 at 150k vs 300k tokens; 5.0 gave L0 39)."""

S = TypeVar("S", bound="TsaeSAE[Any]")
R = TypeVar("R", bound=Callable[..., "SAE[Any]"])


class TrainingJob(Protocol):
    """What a recipe gets from the `train` front-end: sizes, settings, activations and the phased loop."""

    @property
    def d_in(self) -> int:
        """Width of the hook's activations."""

    @property
    def d_sae(self) -> int:
        """Latents the SAE should have (--expansion x d_in)."""

    @property
    def k(self) -> int:
        """Active latents per token for top-k style SAEs (--k)."""

    @property
    def seed(self) -> int:
        """Seed of initialisation and data order (--seed)."""

    @property
    def hook_name(self) -> str:
        """TransformerLens hook the SAE reads."""

    def l1(self, default: float) -> float:
        """--l1 when given, else the architecture's `default`."""

    def metadata(self, **extra: Any) -> SAEMetadata:
        """sae-lens metadata every saved SAE carries (hook, model, context, BOS), plus `extra`."""

    def sequence_activations(self) -> ActivationSource:
        """Hook activations of whole windows, computed once per job."""

    def train_phased(self, sae: S, phases: list[Phase]) -> S:
        """Train `sae` through `phases` with the shared loop; returns it trained, on the CPU."""


class NoOptions(BaseModel):
    """This architecture has no settings beyond the common flags."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TrainingArchitecture:
    """A registered `--arch`: the function that produces the SAE and its typed `--set` options."""

    name: str
    """What `--arch` takes."""
    trainer: Callable[..., SAE[Any]]
    """`(job, options) -> SAE`, trained (or built) in memory; `train` saves it."""
    options_cls: type[BaseModel]
    """Pydantic model of the architecture's settings, filled from `--set name=value`."""

    @property
    def description(self) -> str:
        return (self.trainer.__doc__ or "").strip().splitlines()[0]


TRAINING_ARCHITECTURES: dict[str, TrainingArchitecture] = {}
"""Every registered architecture by `--arch` name."""


def register_training_architecture(name: str, options: type[BaseModel] = NoOptions) -> Callable[[R], R]:
    """Register `trainer(job, options) -> SAE` under `--arch name`; a name registered twice raises ValueError."""

    def decorate(trainer: R) -> R:
        if name in TRAINING_ARCHITECTURES:
            existing = TRAINING_ARCHITECTURES[name].trainer
            raise ValueError(
                f"training architecture {name!r} is already registered "
                f"(existing={existing.__module__}.{existing.__qualname__}, new={trainer.__module__}.{trainer.__qualname__})"
            )
        TRAINING_ARCHITECTURES[name] = TrainingArchitecture(name, trainer, options)
        return trainer

    return decorate
