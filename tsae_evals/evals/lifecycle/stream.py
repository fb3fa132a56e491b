"""Streaming births and deaths: per (scored position, latent) counters and per-latent Poisson-bootstrap totals,
whose size depends on the window length, the SAE's width and the replicates, never on the number of windows.
Births and deaths are read off the runs of `custom_saes.runs.run_lengths` (the primitive the lifecycle tracker
and feature_lifetimes count), so the three agree on what a run is."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from custom_saes.runs import run_lengths
from tsae_evals.evals.lifecycle.config import LifecycleConfig
from tsae_evals.evals.lifecycle.result import (
    LifecycleExclusions,
    LifecycleMetrics,
    LifecycleResult,
    RateMetrics,
    TurnoverMetrics,
)
from tsae_evals.evals.shuffle import shuffle_positions
from tsae_evals.evals.streaming import ReferenceMetrics

BOOTSTRAP_STREAM = 1_000_003
"""Added to the run seed for the bootstrap weights, so they never share a random stream with the shuffles."""


@dataclass
class TransitionCounts:
    """Births, deaths and activity of one set of traces `[b, length, d_sae]` (scored positions only)."""

    replicates: int
    births: torch.Tensor | None = None
    """`[length, d_sae]`: latents inactive at t-1 and active at t (row 0 stays 0: it has no t-1)."""
    deaths: torch.Tensor | None = None
    """`[length, d_sae]`: latents active at t-1 and inactive at t."""
    active: torch.Tensor | None = None
    """`[length, d_sae]`: active latents."""
    boot_switches: torch.Tensor | None = None
    """`[replicates, d_sae]`: births + deaths, windows weighted by each replicate's Poisson(1) draws."""
    boot_exposure: torch.Tensor | None = None
    """`[replicates, d_sae]`: exposure (sum over transitions of (a(t-1) + a(t)) / 2), weighted alike."""

    def add(self, active: torch.Tensor, weights: torch.Tensor) -> None:
        """One batch of traces `active [b, length, d_sae]` (bool) and its bootstrap weights `[replicates, b]`."""
        batch, length, width = active.shape
        if self.births is None:  # the first batch decides the device and the window length
            counters = [torch.zeros(length, width, dtype=torch.long, device=active.device) for _ in range(3)]
            self.births, self.deaths, self.active = counters
            self.boot_switches, self.boot_exposure = (
                torch.zeros(self.replicates, width, dtype=torch.float64, device=active.device) for _ in range(2)
            )
        assert self.deaths is not None and self.active is not None
        assert self.boot_switches is not None and self.boot_exposure is not None
        runs = run_lengths(active)
        born = (~runs.left_censored).long()  # a run starting at the first scored position may have begun earlier
        died = (~runs.right_censored).long()  # a run touching the end has no death in view
        # A run's death is at the first inactive position after it; censored runs are added with weight 0.
        ended = (runs.start + runs.length).clamp_max(length - 1)
        self.births.view(-1).index_add_(0, runs.start * width + runs.latent, born)
        self.deaths.view(-1).index_add_(0, ended * width + runs.latent, died)
        self.active += active.sum(0)
        switches = torch.zeros(batch * width, dtype=torch.float64, device=active.device)
        switches.index_add_(0, runs.sequence * width + runs.latent, (born + died).double())
        on = active.double()
        exposure = on.sum(1) - (on[:, 0] + on[:, -1]) / 2
        self.boot_switches += weights @ switches.view(batch, width)
        self.boot_exposure += weights @ exposure


class LifecycleScorer:
    """Accumulates `latents [b, t, d_sae]` batches (scored positions only) and their shuffle null."""

    def __init__(self, cfg: LifecycleConfig, seed: int, start: int = 1) -> None:
        self.cfg, self.start = cfg, start
        self.real = TransitionCounts(cfg.bootstrap_samples)
        self.null = TransitionCounts(cfg.bootstrap_samples)
        self.shuffles = torch.Generator().manual_seed(seed)  # CPU: the same draws on every device
        self.resamples = torch.Generator().manual_seed(seed + BOOTSTRAP_STREAM)
        self.windows = 0

    def add(self, latents: torch.Tensor) -> None:
        active = latents.detach() > self.cfg.activation_threshold
        ones = torch.ones(self.cfg.bootstrap_samples, active.shape[0], dtype=torch.float64)
        weights = torch.poisson(ones, generator=self.resamples).to(active.device)
        self.windows += active.shape[0]
        self.real.add(active, weights)
        (shuffled,) = shuffle_positions(self.shuffles, active)
        self.null.add(shuffled, weights)  # paired: the same windows weigh the same in both

    def finish(self) -> LifecycleResult:
        if self.windows == 0:
            raise ValueError("lifecycle received no windows")
        return _result(_host(self.real), _host(self.null), self.cfg, self.windows, self.start)


def score_lifecycle(
    batches: Iterable[torch.Tensor], cfg: LifecycleConfig, seed: int, start: int = 1
) -> LifecycleResult:
    """Score every batch of an iterable in one pass (see LifecycleScorer); `start`: window position of the first
    scored position (for the curves' axis)."""
    scorer = LifecycleScorer(cfg, seed, start)
    for latents in batches:
        scorer.add(latents)
    return scorer.finish()


def _host(counts: TransitionCounts) -> TransitionCounts:
    moved = TransitionCounts(counts.replicates)
    for name in ("births", "deaths", "active", "boot_switches", "boot_exposure"):
        setattr(moved, name, getattr(counts, name).cpu())
    return moved


@dataclass
class _Pooled:
    """One set of counters restricted to the kept latents."""

    births: torch.Tensor
    deaths: torch.Tensor
    active: torch.Tensor
    turnover: float
    boot: torch.Tensor
    """Turnover per bootstrap replicate."""


def _pool(counts: TransitionCounts, kept: torch.Tensor) -> _Pooled:
    assert counts.births is not None and counts.deaths is not None and counts.active is not None
    assert counts.boot_switches is not None and counts.boot_exposure is not None
    births = counts.births[:, kept].sum(1).double()
    deaths = counts.deaths[:, kept].sum(1).double()
    active = counts.active[:, kept].sum(1).double()
    exposure = float(active.sum() - (active[0] + active[-1]) / 2)
    turnover = float(births.sum() + deaths.sum()) / exposure if exposure > 0 else math.nan
    boot_exposure = counts.boot_exposure[:, kept].sum(1)
    boot = counts.boot_switches[:, kept].sum(1) / boot_exposure.where(boot_exposure > 0, math.nan)
    return _Pooled(births, deaths, active, turnover, boot)


def _interval(values: torch.Tensor, confidence: float) -> tuple[float, float]:
    finite = values[values.isfinite()]
    if finite.numel() == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    low, high = torch.quantile(finite, torch.tensor([tail, 1 - tail], dtype=finite.dtype)).tolist()
    return low, high


def _result(
    real: TransitionCounts, null: TransitionCounts, cfg: LifecycleConfig, windows: int, start: int
) -> LifecycleResult:
    assert real.active is not None
    length, width = real.active.shape
    tokens, transitions = windows * length, windows * (length - 1)
    firings = real.active.sum(0)
    dense = firings.double() / tokens > cfg.dense_threshold
    kept = ~dense
    ours, chance = _pool(real, kept), _pool(null, kept)
    low, high = _interval(ours.boot, cfg.confidence)
    ratio_low, ratio_high = _interval(ours.boot / chance.boot, cfg.confidence)
    ratio = ours.turnover / chance.turnover if chance.turnover > 0 else math.nan
    metrics = LifecycleMetrics(
        turnover=TurnoverMetrics(
            turnover=ours.turnover,
            turnover_low=low,
            turnover_high=high,
            turnover_shuffled=chance.turnover,
            turnover_ratio=ratio,
            turnover_ratio_low=ratio_low,
            turnover_ratio_high=ratio_high,
        ),
        rates=RateMetrics(
            births_per_token=float(ours.births.sum()) / transitions,
            deaths_per_token=float(ours.deaths.sum()) / transitions,
            births_per_token_shuffled=float(chance.births.sum()) / transitions,
            deaths_per_token_shuffled=float(chance.deaths.sum()) / transitions,
            active_per_token=float(ours.active.sum()) / tokens,
        ),
        exclusions=LifecycleExclusions(
            n_latents=width, n_dense_excluded=int(dense.sum()), n_latents_fired=int((kept & (firings > 0)).sum())
        ),
        reference=ReferenceMetrics(
            l0=float(firings.sum()) / tokens, tokens_evaluated=tokens, windows_evaluated=windows
        ),
    )
    return LifecycleResult(
        metrics=metrics,
        positions=list(range(start, start + length)),
        births=(ours.births / windows).tolist(),
        deaths=(ours.deaths / windows).tolist(),
        active=(ours.active / windows).tolist(),
        births_shuffled=(chance.births / windows).tolist(),
        deaths_shuffled=(chance.deaths / windows).tolist(),
        dense_latents=dense.nonzero().flatten().tolist(),
    )
