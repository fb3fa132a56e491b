"""Train an SAE with sae-lens's own runner and trainer, on our model's activations and our token windows, on CPU."""

from __future__ import annotations

import difflib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tsae_evals.data.documents import DEFAULT_DATASET
from tsae_evals.errors import UsageError
from tsae_evals.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from sae_lens import SAE
    from sae_lens.saes.sae import SAEMetadata, TrainingSAEConfig

    from custom_saes.base import TsaeSAE
    from custom_saes.training.activations import SequenceActivations
    from custom_saes.training.loop import Phase
    from tsae_evals.data import TokenWindows

SAE_LENS_L1 = 5.0
"""Default L1 of sae-lens's ReLU SAE (it penalises |f| x decoder norm, decoder rows start at norm 0.1)."""
PHASED_L1 = 3.0
"""Default L1 of the phased tsae_ ReLU-family recipes (unit-norm decoder rows throughout): measured to match the
sae-lens ReLU's L0 (137 vs 144 at 150k vs 300k tokens; 5.0 gave L0 39)."""

MAX_CACHED_TOKENS = 400_000
"""Phased training keeps this many tokens of activations in memory (bfloat16: ~460 MB at d_model 576) and
cycles over them when --tokens is larger."""


@dataclass(frozen=True)
class TrainRequest:
    """One `train` invocation."""

    arch: str
    """Architecture id (see training_architectures())."""
    layer: int
    """Residual stream layer: the SAE reads blocks.{layer}.hook_resid_post."""
    tokens: int
    """Training activations (tokens) to consume."""
    out: Path
    """Directory to write the sae-lens SAE to."""
    expansion: int = 4
    """d_sae = expansion * d_model."""
    l1_coefficient: float | None = None
    """L1 penalty of ReLU-family SAEs; None: the architecture's default (SAE_LENS_L1 for relu, PHASED_L1 for the
    phased tsae_ recipes; both give L0 near 140 on SmolLM2 layer 6 at 150k-300k tokens)."""
    k: int = 32
    """Active latents per token for TopK and BatchTopK SAEs."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size_tokens: int = 2048
    """Activations per optimiser step."""
    context_size: int = 128
    """Tokens per window, BOS included."""
    model: str = DEFAULT_MODEL
    """Model the activations come from."""
    dataset: str = DEFAULT_DATASET
    """Text source."""
    seed: int = 0
    """Seed of document order, SAE initialisation and activation shuffling."""
    device: str = "cpu"
    """Torch device."""
    options: tuple[str, ...] = ()
    """Architecture settings as `name=value` (`--set`), validated against the architecture's options."""
    checkpoints: bool = True
    """Save checkpoints into `<out>.checkpoints/`: phased trainers at the end of every phase, sae-lens's trainer
    at a third and two thirds of training."""


Trainer = Callable[["TrainingJob", Any], "SAE[Any]"]


class NoOptions(BaseModel):
    """This architecture has no settings beyond the common flags."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TrainingArchitecture:
    """A registered `--arch`: the function that produces the SAE and its typed `--set` options."""

    name: str
    """What `--arch` takes."""
    trainer: Trainer
    """`(job, options) -> SAE`, trained (or built) in memory; `train` saves it."""
    options_cls: type[BaseModel]
    """Pydantic model of the architecture's settings, filled from `--set name=value`."""

    @property
    def description(self) -> str:
        return (self.trainer.__doc__ or "").strip().splitlines()[0]


TRAINING_ARCHITECTURES: dict[str, TrainingArchitecture] = {}


def register_training_architecture(name: str, options: type[BaseModel] = NoOptions) -> Callable[[Trainer], Trainer]:
    """Register `trainer(job, options) -> SAE` under `--arch name`; duplicates raise."""

    def decorate(trainer: Trainer) -> Trainer:
        if name in TRAINING_ARCHITECTURES:
            raise ValueError(f"training architecture {name!r} is already registered")
        TRAINING_ARCHITECTURES[name] = TrainingArchitecture(name, trainer, options)
        return trainer

    return decorate


def training_architectures() -> dict[str, TrainingArchitecture]:
    """Every architecture `train` knows; importing custom_saes registers the tsae_ ones and the baselines."""
    import custom_saes  # noqa: F401

    return TRAINING_ARCHITECTURES


class TrainingJob:
    """What a trainer gets: the request, the model, the hook, and lazily built windows and activations."""

    def __init__(self, request: TrainRequest, model: Any, hook_name: str) -> None:
        self.request = request
        self.model = model
        self.hook_name = hook_name
        self.d_in = int(model.cfg.d_model)
        self._documents: Any = None
        self._activations: SequenceActivations | None = None

    @property
    def d_sae(self) -> int:
        return self.d_in * self.request.expansion

    def l1(self, default: float) -> float:
        """--l1 when given, else the architecture's `default`."""
        return default if self.request.l1_coefficient is None else self.request.l1_coefficient

    def windows(self, n_windows: int) -> TokenWindows:
        """`n_windows` windows of `context_size` tokens, one document each, in the seeded document order."""
        from tsae_evals.data import load_documents, make_windows

        if self._documents is None:
            self._documents = load_documents(self.request.dataset, seed=self.request.seed, max_documents=10**6)
        return make_windows(
            self.model.tokenizer, self._documents, context_size=self.request.context_size, n_windows=n_windows
        )

    def sequence_activations(self) -> SequenceActivations:
        """Hook activations of whole windows for up to MAX_CACHED_TOKENS tokens, computed once per job."""
        from custom_saes.training.activations import collect_sequence_activations

        if self._activations is None:
            per_window = self.request.context_size - 1
            unique_tokens = min(self.request.tokens, MAX_CACHED_TOKENS)
            windows = self.windows(max(2, math.ceil(unique_tokens / per_window)))
            self._activations = collect_sequence_activations(
                self.model, self.hook_name, windows.tokens, windows.first_text_position
            )
        return self._activations

    def metadata(self, **extra: Any) -> SAEMetadata:
        """sae-lens metadata every SAE we save carries (hook, model, context, BOS), plus `extra`."""
        from sae_lens.saes.sae import SAEMetadata

        return SAEMetadata(
            hook_name=self.hook_name,
            hook_head_index=None,
            model_name=self.request.model,
            context_size=self.request.context_size,
            prepend_bos=True,
            dataset_path=self.request.dataset,
            **extra,
        )

    def train_phased(self, sae: TsaeSAE[Any], phases: list[Phase]) -> TsaeSAE[Any]:
        """Run the shared phased loop on this job's sequence activations; checkpoints beside `--out`."""
        from custom_saes.training.loop import train_in_phases

        request = self.request
        per_window = request.context_size - 1
        sae.to(request.device)
        history = train_in_phases(
            sae,
            phases,
            self.sequence_activations(),
            tokens=request.tokens,
            lr=request.lr,
            batch_windows=max(1, request.batch_size_tokens // per_window),
            seed=request.seed,
            checkpoint_dir=checkpoint_dir(request.out) if request.checkpoints else None,
        )
        sae.cfg.metadata.training_log = history.rows
        return sae.to("cpu")


def checkpoint_dir(out: Path) -> Path:
    """Where phase checkpoints of `out` go: a sibling directory `<out>.checkpoints`."""
    return out.with_name(out.name + ".checkpoints")


def parse_options(architecture: TrainingArchitecture, assignments: tuple[str, ...]) -> BaseModel:
    """`name=value` strings (value parsed as JSON when it parses) validated against the architecture's options."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise UsageError(f"malformed --set {assignment!r}", "write it as name=value, e.g. --set window_size=8")
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    try:
        return architecture.options_cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        fields = ", ".join(architecture.options_cls.model_fields) or "none"
        raise UsageError(
            f"invalid --set for {architecture.name}: {'.'.join(map(str, first['loc'])) or 'options'}: {first['msg']}",
            f"{architecture.name} takes: {fields} (python -m tsae_evals list --archs)",
        ) from None


@register_training_architecture("relu")
def _relu(job: TrainingJob, _options: NoOptions) -> SAE[Any]:
    """sae-lens ReLU SAE ("standard") with an L1 penalty (--l1), sae-lens's own trainer."""
    from sae_lens import StandardTrainingSAEConfig

    return _train_with_sae_lens(
        job,
        StandardTrainingSAEConfig(
            d_in=job.d_in,
            d_sae=job.d_sae,
            l1_coefficient=job.l1(SAE_LENS_L1),
            normalize_activations="expected_average_only_in",
        ),
    )


@register_training_architecture("topk")
def _topk(job: TrainingJob, _options: NoOptions) -> SAE[Any]:
    """sae-lens TopK SAE (--k), sae-lens's own trainer."""
    from sae_lens import TopKTrainingSAEConfig

    return _train_with_sae_lens(
        job,
        TopKTrainingSAEConfig(
            d_in=job.d_in, d_sae=job.d_sae, k=job.request.k, normalize_activations="expected_average_only_in"
        ),
    )


@register_training_architecture("batchtopk")
def _batchtopk(job: TrainingJob, _options: NoOptions) -> SAE[Any]:
    """sae-lens BatchTopK SAE (--k; saved as JumpReLU), sae-lens's own trainer."""
    from sae_lens import BatchTopKTrainingSAEConfig

    return _train_with_sae_lens(
        job,
        BatchTopKTrainingSAEConfig(
            d_in=job.d_in, d_sae=job.d_sae, k=job.request.k, normalize_activations="expected_average_only_in"
        ),
    )


def train(request: TrainRequest, model_loader: Callable[[str, str], Any] | None = None) -> Path:
    """Train (or build) the SAE, then write it atomically to `request.out`; returns that path."""
    import torch

    from tsae_evals.models import load_model

    architectures = training_architectures()
    if request.arch not in architectures:
        close = difflib.get_close_matches(request.arch, list(architectures), n=3, cutoff=0.4)
        raise UsageError(
            f"unknown architecture {request.arch!r}",
            f"use one of {', '.join(sorted(architectures))}" + (f" (did you mean {close[0]}?)" if close else ""),
        )
    architecture = architectures[request.arch]
    options = parse_options(architecture, request.options)
    if request.tokens < request.batch_size_tokens:
        raise UsageError(
            f"--tokens {request.tokens} is less than one batch", f"train on at least {request.batch_size_tokens} tokens"
        )
    model = (model_loader or load_model)(request.model, request.device)
    if not 0 <= request.layer < model.cfg.n_layers:
        raise UsageError(f"layer {request.layer} does not exist", f"pick a layer in 0..{model.cfg.n_layers - 1}")
    torch.manual_seed(request.seed)
    started = time.perf_counter()
    sae = architecture.trainer(TrainingJob(request, model, f"blocks.{request.layer}.hook_resid_post"), options)
    metadata = sae.cfg.metadata
    metadata.training_tokens = request.tokens
    metadata.tsae_arch = request.arch
    metadata.training_seed = request.seed
    metadata.training_options = options.model_dump(mode="json")
    metadata.training_wall_time_s = round(time.perf_counter() - started, 1)
    _save_atomically(sae, request.out)
    return request.out


def _train_with_sae_lens(job: TrainingJob, sae_cfg: TrainingSAEConfig) -> SAE[Any]:
    """sae-lens's runner and trainer on our windows: per-token architectures, shuffled activations."""
    import datasets
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig

    request = job.request
    store_batch, norm_batches = 16, 5
    # sae-lens's mixing buffer holds n_batches_in_buffer * context_size activations and must hold 4 batches.
    n_buffer_batches = math.ceil(4 * request.batch_size_tokens / request.context_size)
    # BOS is excluded from training, so each window gives context_size - 1 activations; the margin covers the
    # norm estimate and the buffer's read-ahead, so no window is seen twice.
    needed_tokens = request.tokens + (norm_batches + 8) * request.batch_size_tokens
    windows = job.windows(math.ceil(needed_tokens / (request.context_size - 1)) + 2 * store_batch)
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=sae_cfg,
        model_name=request.model,
        hook_name=job.hook_name,
        dataset_path=request.dataset,
        is_dataset_tokenized=True,
        streaming=False,
        context_size=request.context_size,
        prepend_bos=True,
        exclude_special_tokens=True,
        training_tokens=request.tokens,
        train_batch_size_tokens=request.batch_size_tokens,
        store_batch_size_prompts=store_batch,
        n_batches_in_buffer=n_buffer_batches,
        n_batches_for_norm_estimate=norm_batches,
        lr=request.lr,
        lr_warm_up_steps=max(1, request.tokens // request.batch_size_tokens // 20),
        seed=request.seed,
        device=request.device,
        logger=LoggingConfig(log_to_wandb=False),
        output_path=None,
        # sae-lens appends a run id: checkpoints land in OUT.checkpoints/<id>/<tokens seen>/.
        checkpoint_path=str(checkpoint_dir(request.out)) if request.checkpoints else None,
        n_checkpoints=2 if request.checkpoints else 0,
        verbose=False,
    )
    runner = LanguageModelSAETrainingRunner(
        runner_cfg,
        override_dataset=datasets.Dataset.from_dict({"tokens": windows.tokens.tolist()}),
        override_model=job.model,
    )
    with _progress_with_l0_and_explained_variance():
        return runner.run()


@contextmanager
def _progress_with_l0_and_explained_variance(every_steps: int = 10) -> Iterator[None]:
    """Make sae-lens's progress bar update every few steps and show L0 and explained variance beside the losses.

    sae-lens refreshes its bar every 100 steps and shows only losses: on CPU that is minutes without a sign of
    life, and losses alone do not say whether the SAE is becoming sparse or faithful.
    """
    import torch
    from sae_lens import llm_sae_training_runner
    from sae_lens.training.sae_trainer import SAETrainer

    class ReportingTrainer(SAETrainer):  # type: ignore[misc]
        def _update_pbar(self, step_output: Any, pbar: Any, update_interval: int = 100) -> None:
            if self.n_training_steps % every_steps:
                return
            with torch.no_grad():
                sae_in, sae_out = step_output.sae_in.float(), step_output.sae_out.float()
                l0 = float((step_output.feature_acts > 0).float().sum(-1).mean())
                variance = (sae_in - sae_in.mean(0)).pow(2).sum()
                explained = float(1 - (sae_in - sae_out).pow(2).sum() / variance)
            losses = " ".join(
                f"{name}={float(value() if callable(value) else value):.3g}"
                for name, value in step_output.losses.items()
            )
            pbar.set_description(f"step {self.n_training_steps} {losses} L0={l0:.1f} EV={explained:.3f}")
            pbar.update(min(self.n_training_samples, pbar.total) - pbar.n)

    original = llm_sae_training_runner.SAETrainer
    llm_sae_training_runner.SAETrainer = ReportingTrainer
    try:
        yield
    finally:
        llm_sae_training_runner.SAETrainer = original


def _save_atomically(sae: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        # sae-lens training SAEs convert to their inference class on save; inference SAEs save as they are.
        save = getattr(sae, "save_inference_model", None) or sae.save_model
        save(str(staging))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
