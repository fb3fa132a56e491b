"""Streaming lifetime statistics: per-latent counters and per-latent run-length histograms, whose size depends
on the SAE's width and `max_lifetime`, never on the number of tokens read. They are counted on the device of the
latents (allocated with the first batch); only these summaries reach the host, once, at the end."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from custom_saes.runs import run_lengths
from tsae_evals.evals.feature_lifetimes.config import FeatureLifetimesConfig
from tsae_evals.evals.feature_lifetimes.result import (
    BurstinessMetrics,
    CensoringMetrics,
    ExclusionMetrics,
    FeatureLifetimesMetrics,
    FeatureLifetimesResult,
    LatentLifetimes,
    LifetimeMetrics,
    PersistenceMetrics,
    ReferenceMetrics,
)
from tsae_evals.evals.shuffle import shuffle_positions

_COUNTERS = ("firings", "completed", "right_censored", "left_censored", "gap_count", "gap_sum", "gap_square_sum")


@dataclass
class LifetimeStatistics:
    """Counters over every window read, per latent."""

    d_sae: int
    max_lifetime: int
    tokens: int = 0
    firings: torch.Tensor = field(init=False)
    completed: torch.Tensor = field(init=False)
    """[d_sae, max_lifetime + 1]: uncensored runs by length (lengths above max share the last bin)."""
    right_censored: torch.Tensor = field(init=False)
    """[d_sae, max_lifetime + 1]: right-censored (and not left-censored) runs by observed length."""
    left_censored: torch.Tensor = field(init=False)
    gap_count: torch.Tensor = field(init=False)
    gap_sum: torch.Tensor = field(init=False)
    gap_square_sum: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self._allocate(torch.device("cpu"))

    def _allocate(self, device: torch.device) -> None:
        width = self.max_lifetime + 1
        self.firings = torch.zeros(self.d_sae, dtype=torch.long, device=device)
        self.completed = torch.zeros(self.d_sae, width, dtype=torch.long, device=device)
        self.right_censored = torch.zeros(self.d_sae, width, dtype=torch.long, device=device)
        self.left_censored = torch.zeros(self.d_sae, dtype=torch.long, device=device)
        self.gap_count = torch.zeros(self.d_sae, dtype=torch.long, device=device)
        self.gap_sum = torch.zeros(self.d_sae, dtype=torch.float64, device=device)
        self.gap_square_sum = torch.zeros(self.d_sae, dtype=torch.float64, device=device)

    def to_host(self) -> LifetimeStatistics:
        """A copy on the CPU, where the per-latent summaries are read (small: width x max_lifetime counters)."""
        host = LifetimeStatistics(self.d_sae, self.max_lifetime, self.tokens)
        for name in _COUNTERS:
            setattr(host, name, getattr(self, name).cpu())
        return host

    def add(self, active: torch.Tensor) -> None:
        """One batch of traces `active [b, t, d_sae]` (bool), whole windows.

        Masked-out runs are added with weight 0 rather than selected, so the only host sync is run_lengths' one."""
        if self.tokens == 0 and self.firings.device != active.device:  # the first batch decides the device
            self._allocate(active.device)
        self.tokens += active.shape[0] * active.shape[1]
        runs = run_lengths(active)
        self.firings.index_add_(0, runs.latent, runs.length)  # every firing lies in exactly one run
        bins = runs.latent * (self.max_lifetime + 1) + runs.length.clamp_max(self.max_lifetime)
        not_left = ~runs.left_censored
        self.completed.view(-1).index_add_(0, bins, (not_left & ~runs.right_censored).long())
        self.right_censored.view(-1).index_add_(0, bins, (not_left & runs.right_censored).long())
        self.left_censored.index_add_(0, runs.latent, runs.left_censored.long())
        # Gaps between consecutive firings: 1 inside a run, next start - previous end between runs of the same
        # (window, latent). The gaps before the first and after the last firing of a window are unobserved.
        inside = (runs.length - 1).double()
        self._add_gaps(runs.latent, inside, torch.ones_like(inside))
        same = (runs.sequence[1:] == runs.sequence[:-1]) & (runs.latent[1:] == runs.latent[:-1])
        between = (runs.start[1:] - (runs.start[:-1] + runs.length[:-1] - 1)).double()
        self._add_gaps(runs.latent[1:], same.double(), between)

    def _add_gaps(self, latents: torch.Tensor, counts: torch.Tensor, sizes: torch.Tensor) -> None:
        """For each entry, `counts` gaps of length `sizes` (a run of length L holds L - 1 gaps of 1)."""
        self.gap_count.index_add_(0, latents, counts.long())
        self.gap_sum.index_add_(0, latents, counts * sizes)
        self.gap_square_sum.index_add_(0, latents, counts * sizes.pow(2))

    def completed_runs(self) -> torch.Tensor:
        return self.completed.sum(1)

    def mean_lifetime(self) -> torch.Tensor:
        lengths = torch.arange(self.max_lifetime + 1, dtype=torch.float64)
        runs = self.completed_runs()
        total = (self.completed.double() * lengths).sum(1)
        return torch.where(runs > 0, total / runs.clamp_min(1), torch.full_like(total, math.nan))

    def singleton_fraction(self) -> torch.Tensor:
        runs = self.completed_runs()
        return torch.where(runs > 0, self.completed[:, 1].double() / runs.clamp_min(1), math.nan)

    def firing_rate(self) -> torch.Tensor:
        return self.firings.double() / max(1, self.tokens)

    def persistence_ratio(self) -> torch.Tensor:
        return self.mean_lifetime() * (1 - self.firing_rate())

    def burstiness(self) -> torch.Tensor:
        count = self.gap_count.double().clamp_min(1)
        mean = self.gap_sum / count
        sd = (self.gap_square_sum / count - mean.pow(2)).clamp_min(0).sqrt()
        return torch.where(self.gap_count >= 2, (sd - mean) / (sd + mean), math.nan)

    def kaplan_meier(self, latents: torch.Tensor) -> list[float]:
        """P(lifetime >= L), L = 1..max_lifetime, from the pooled runs of `latents` (bool mask)."""
        completed = self.completed[latents].sum(0).double()
        censored = self.right_censored[latents].sum(0).double()
        at_risk = (completed + censored).flip(0).cumsum(0).flip(0)  # runs with observed length >= L
        completed_list, at_risk_list = completed.tolist(), at_risk.tolist()  # python floats: same doubles
        survival, current = [], 1.0
        for length in range(1, self.max_lifetime + 1):
            survival.append(current)
            if at_risk_list[length] > 0:
                current *= 1 - completed_list[length] / at_risk_list[length]
        return survival


class LifetimeScorer:
    """Accumulates `latents [b, t, d_sae]` batches (whole windows, BOS removed) and their shuffle null."""

    def __init__(self, d_sae: int, cfg: FeatureLifetimesConfig, seed: int) -> None:
        self.cfg = cfg
        self.real = LifetimeStatistics(d_sae, cfg.max_lifetime)
        self.null = LifetimeStatistics(d_sae, cfg.max_lifetime)
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same shuffles on every device
        self.windows = 0

    def add(self, latents: torch.Tensor) -> None:
        active = latents.detach() > self.cfg.activation_threshold
        self.windows += active.shape[0]
        self.real.add(active)
        (shuffled,) = shuffle_positions(self.generator, active)
        self.null.add(shuffled)

    def finish(self) -> FeatureLifetimesResult:
        if self.windows == 0:
            raise ValueError("feature_lifetimes received no windows")
        return _result(self.real.to_host(), self.null.to_host(), self.cfg, self.windows)


def score_lifetimes(
    batches: Iterable[torch.Tensor], d_sae: int, cfg: FeatureLifetimesConfig, seed: int
) -> FeatureLifetimesResult:
    """Score every batch of an iterable in one pass (see LifetimeScorer)."""
    scorer = LifetimeScorer(d_sae, cfg, seed)
    for latents in batches:
        scorer.add(latents)
    return scorer.finish()


def _result(
    real: LifetimeStatistics, null: LifetimeStatistics, cfg: FeatureLifetimesConfig, windows: int
) -> FeatureLifetimesResult:
    # Each per-latent summary once: the per-latent rows below index them (recomputing them per row cost more
    # than the whole streamed count at 512 windows).
    rate = real.firing_rate()
    completed_runs, lifetime, singleton = real.completed_runs(), real.mean_lifetime(), real.singleton_fraction()
    dense = rate > cfg.dense_threshold
    measured = ~dense & (completed_runs >= cfg.min_completed_runs)
    null_measured = ~dense & (null.completed_runs() >= cfg.min_completed_runs)
    null_lifetime = null.mean_lifetime()
    ratio, null_ratio = lifetime * (1 - rate), null_lifetime * (1 - null.firing_rate())  # persistence_ratio
    burst, null_burst = real.burstiness(), null.burstiness()
    bursty = ~dense & (real.gap_count >= cfg.min_gaps)
    fired = ~dense & (real.firings > 0)
    both = measured & null_measured
    singletons = real.completed[measured, 1].sum()
    null_singletons = null.completed[null_measured, 1].sum()
    survival = real.kaplan_meier(measured)
    metrics = FeatureLifetimesMetrics(
        lifetimes=LifetimeMetrics(
            mean_lifetime=_mean(lifetime[measured]),
            median_lifetime=_median(lifetime[measured]),
            mean_lifetime_shuffled=_mean(null_lifetime[null_measured]),
            km_mean_lifetime=float(sum(survival)),
            singleton_fraction=_share(singletons, real.completed[measured].sum()),
            singleton_fraction_shuffled=_share(null_singletons, null.completed[null_measured].sum()),
        ),
        persistence=PersistenceMetrics(
            persistence_ratio_mean=_mean(ratio[measured]),
            persistence_ratio_median=_median(ratio[measured]),
            persistence_ratio_shuffled_mean=_mean(null_ratio[null_measured]),
            fraction_above_null=_share((ratio[both] > null_ratio[both]).sum(), both.sum()),
        ),
        burstiness=BurstinessMetrics(
            burstiness_mean=_mean(burst[bursty]),
            burstiness_shuffled_mean=_mean(null_burst[~dense & (null.gap_count >= cfg.min_gaps)]),
            n_latents_measured=int(bursty.sum()),
        ),
        censoring=CensoringMetrics(
            completed_runs=int(real.completed.sum()),
            right_censored_runs=int(real.right_censored.sum()),
            left_censored_runs=int(real.left_censored.sum()),
        ),
        exclusions=ExclusionMetrics(
            n_latents=real.d_sae,
            n_dense_excluded=int(dense.sum()),
            n_latents_measured=int(measured.sum()),
            coverage=_share(measured.sum(), fired.sum()),
        ),
        reference=ReferenceMetrics(
            l0=float(real.firings.sum()) / max(1, real.tokens), tokens_evaluated=real.tokens, windows_evaluated=windows
        ),
    )
    censored = real.left_censored + real.right_censored.sum(1)
    top = torch.argsort(real.firings, descending=True)[: cfg.top_latents]
    top = top[real.firings[top] > 0]
    columns = zip(
        top.tolist(),
        *(values[top].tolist() for values in (rate, completed_runs, lifetime, singleton, ratio, burst, censored)),
        strict=True,
    )
    rows = [
        LatentLifetimes(
            latent=i,
            firing_rate=r,
            completed_runs=n,
            mean_lifetime=m,
            singleton_fraction=s,
            persistence_ratio=p,
            burstiness=z,
            censored_runs=c,
        )
        for i, r, n, m, s, p, z, c in columns
    ]
    return FeatureLifetimesResult(
        metrics=metrics,
        top_latents=rows,
        survival=survival,
        survival_shuffled=null.kaplan_meier(null_measured),
        lifetime_histogram=real.completed[measured].sum(0).tolist(),
        dense_latents=dense.nonzero().flatten().tolist(),
    )


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else math.nan


def _median(values: torch.Tensor) -> float:
    return float(values.double().median()) if values.numel() else math.nan


def _share(part: torch.Tensor | int, whole: torch.Tensor | int) -> float:
    whole_value = int(whole)
    return int(part) / whole_value if whole_value else math.nan
