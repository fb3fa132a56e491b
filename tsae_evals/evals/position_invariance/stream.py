"""Streaming position invariance: per-latent sums over chunks of w positions, whose size depends on the SAE's
width only, never on the number of tokens read. They live on the device of the first batch; only the final
per-latent summaries reach the host.

Per latent and per scale the state is: the sum and the sum of squares of its activations over the counted
positions, the sum over chunks of squared deviations from the chunk's mean (real and after the shuffle null), and
the sum over windows of (window total)^2 / n, from which the between-window share and the null's exact
expectation follow. Within-chunk deviations are summed directly (not as sum of squares minus squared sums), so a
latent constant inside every chunk scores exactly 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from tsae_evals.evals.position_invariance.config import PositionInvarianceConfig
from tsae_evals.evals.position_invariance.result import (
    ExclusionMetrics,
    InvarianceMetrics,
    LatentInvariance,
    PositionInvarianceMetrics,
    PositionInvarianceResult,
    ReferenceMetrics,
    SecondScaleMetrics,
)
from tsae_evals.evals.shuffle import gather_positions, shuffle_order


def excess_over_null(score: float, null: float) -> float:
    """(score - null) / (1 - null): 0 at the shuffle null, 1 at perfect invariance."""
    return (score - null) / (1 - null) if null != 1 else math.nan


@dataclass
class ChunkStatistics:
    """Sums over every window read, per latent, for one chunk size."""

    d_sae: int
    chunk_size: int
    positions: int = 0
    """Counted positions per latent (the same for every latent)."""
    windows: int = 0
    window_positions: int = 0
    """n: counted positions per window (a whole number of chunks)."""
    firings: torch.Tensor = field(init=False)
    total: torch.Tensor = field(init=False)
    square: torch.Tensor = field(init=False)
    within: torch.Tensor = field(init=False)
    """Sum over chunks of squared deviations from the chunk's mean."""
    within_shuffled: torch.Tensor = field(init=False)
    """The same after the shuffle null."""
    window_square: torch.Tensor = field(init=False)
    """Sum over windows of (window total)^2 / n."""

    def __post_init__(self) -> None:
        self._allocate(torch.device("cpu"))

    def _allocate(self, device: torch.device) -> None:
        self.firings = torch.zeros(self.d_sae, dtype=torch.long, device=device)
        for name in ("total", "square", "within", "within_shuffled", "window_square"):
            setattr(self, name, torch.zeros(self.d_sae, dtype=torch.float64, device=device))

    def add(self, latents: torch.Tensor, threshold: float, generator: torch.Generator) -> None:
        """One batch `latents [b, t, d_sae]` of scored positions (BOS and skipped positions already cut)."""
        batch, length, width = latents.shape
        n_chunks = length // self.chunk_size
        n = n_chunks * self.chunk_size
        if n_chunks == 0:
            raise ValueError(f"windows of {length} scored positions hold no chunk of {self.chunk_size}")
        if self.positions == 0 and self.firings.device != latents.device:  # the first batch decides the device
            self._allocate(latents.device)
        self.window_positions = n
        self.positions += batch * n
        self.windows += batch
        kept = latents[:, :n].detach()
        self.firings += (kept > threshold).sum((0, 1))
        values = kept.to(_elementwise_dtype(kept))
        chunks = values.view(batch, n_chunks, self.chunk_size, width)
        chunk_totals = chunks.sum(2)  # [b, M, d]
        self.total += chunk_totals.double().sum((0, 1))
        self.square += chunks.pow(2).sum(2).double().sum((0, 1))
        self.within += _within_chunks(chunks)
        self.window_square += chunk_totals.double().sum(1).pow(2).sum(0) / n
        (shuffled,) = gather_positions(shuffle_order(generator, batch, n, kept.device), values)
        self.within_shuffled += _within_chunks(shuffled.view(batch, n_chunks, self.chunk_size, width))

    def to_host(self) -> ChunkStatistics:
        host = ChunkStatistics(self.d_sae, self.chunk_size, self.positions, self.windows, self.window_positions)
        for name in ("firings", "total", "square", "within", "within_shuffled", "window_square"):
            setattr(host, name, getattr(self, name).cpu())
        return host

    def total_ss(self) -> torch.Tensor:
        """[d_sae] sum of squared deviations from each latent's overall mean."""
        return (self.square - self.total.pow(2) / max(1, self.positions)).clamp_min(0)

    def scores(self) -> InvarianceScores:
        total = self.total_ss()
        safe = torch.where(total > 0, total, torch.ones_like(total))
        defined = total > 0
        nan = torch.full_like(total, math.nan)
        between_windows = (self.window_square - self.total.pow(2) / max(1, self.positions)).clamp_min(0)
        rho = torch.where(defined, (between_windows / safe).clamp(0, 1), nan)
        n, chunks = self.window_positions, self.window_positions // self.chunk_size
        within_window_chance = (chunks - 1) / (n - 1) if n > 1 else math.nan
        return InvarianceScores(
            invariance=torch.where(defined, 1 - self.within / safe, nan),
            shuffled=torch.where(defined, 1 - self.within_shuffled / safe, nan),
            chance=rho + (1 - rho) * within_window_chance,
            between_window_share=rho,
        )


@dataclass
class InvarianceScores:
    """Per-latent scores `[d_sae]` of one chunk size (NaN where the latent has no variance)."""

    invariance: torch.Tensor
    shuffled: torch.Tensor
    chance: torch.Tensor
    between_window_share: torch.Tensor


def _elementwise_dtype(values: torch.Tensor) -> torch.dtype:
    """float64 on the CPU (the reference values), float32 elsewhere (per-chunk sums of w values lose nothing that
    matters there, and float64 is slow on GPUs); every sum over chunks and windows is float64."""
    return torch.float64 if values.device.type == "cpu" else torch.float32


def _within_chunks(chunks: torch.Tensor) -> torch.Tensor:
    """[d_sae] float64: sum over chunks of squared deviations from the chunk mean, `chunks [b, M, w, d]`."""
    centred = chunks - chunks.mean(2, keepdim=True)
    return centred.pow(2).sum(2).double().sum((0, 1))


class InvarianceScorer:
    """Accumulates `latents [b, t, d_sae]` batches of scored positions at every chunk size of the config."""

    def __init__(self, d_sae: int, cfg: PositionInvarianceConfig, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed
        self.scales = [ChunkStatistics(d_sae, size) for size in cfg.chunk_sizes]
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same shuffles on every device

    def add(self, latents: torch.Tensor) -> None:
        for scale in self.scales:
            scale.add(latents, self.cfg.activation_threshold, self.generator)

    def finish(self) -> PositionInvarianceResult:
        if self.scales[0].windows == 0:
            raise ValueError("position_invariance received no windows")
        return _result([scale.to_host() for scale in self.scales], self.cfg, self.seed)


def score_invariance(
    batches: Iterable[torch.Tensor], d_sae: int, cfg: PositionInvarianceConfig, seed: int
) -> PositionInvarianceResult:
    """Score every batch of an iterable in one pass (see InvarianceScorer)."""
    scorer = InvarianceScorer(d_sae, cfg, seed)
    for latents in batches:
        scorer.add(latents)
    return scorer.finish()


def _result(scales: list[ChunkStatistics], cfg: PositionInvarianceConfig, seed: int) -> PositionInvarianceResult:
    first = scales[0]
    rate = first.firings.double() / max(1, first.positions)
    dense = rate > cfg.dense_threshold
    scores = [scale.scores() for scale in scales]
    measured = ~dense & (first.firings >= cfg.min_firings) & (first.total_ss() > 0)
    for scale, score in zip(scales[1:], scores[1:], strict=True):  # the same latents at every scale
        measured &= torch.isfinite(score.invariance) & (scale.total_ss() > 0)
    head = scores[0]
    real, null = head.invariance[measured], head.shuffled[measured]
    mean, mean_null = _mean(real), _mean(null)
    intervals = _bootstrap(real, null, cfg.bootstrap_samples, seed)
    fired = ~dense & (first.firings > 0)
    second = None
    if len(scales) > 1:
        other = scores[1]
        second_real, second_null = other.invariance[measured], other.shuffled[measured]
        second = SecondScaleMetrics(
            mean_invariance=_mean(second_real),
            mean_invariance_shuffled=_mean(second_null),
            mean_invariance_chance=_mean(other.chance[measured]),
            invariance_excess=excess_over_null(_mean(second_real), _mean(second_null)),
            fraction_above_null=_share(int((second_real > second_null).sum()), int(measured.sum())),
            chunk_size=scales[1].chunk_size,
        )
    metrics = PositionInvarianceMetrics(
        invariance=InvarianceMetrics(
            mean_invariance=mean,
            median_invariance=float(real.median()) if real.numel() else math.nan,
            mean_invariance_shuffled=mean_null,
            mean_invariance_chance=_mean(head.chance[measured]),
            invariance_excess=excess_over_null(mean, mean_null),
            fraction_above_null=_share(int((real > null).sum()), int(measured.sum())),
            mean_invariance_ci_low=intervals[0],
            mean_invariance_ci_high=intervals[1],
            invariance_excess_ci_low=intervals[2],
            invariance_excess_ci_high=intervals[3],
            between_window_share=_mean(head.between_window_share[measured]),
            chunk_size=first.chunk_size,
        ),
        second_scale=second,
        exclusions=ExclusionMetrics(
            n_latents=first.d_sae,
            n_dense_excluded=int(dense.sum()),
            n_latents_measured=int(measured.sum()),
            coverage=_share(int(measured.sum()), int(fired.sum())),
        ),
        reference=ReferenceMetrics(
            l0=float(first.firings.sum()) / max(1, first.positions),
            tokens_evaluated=first.positions,
            windows_evaluated=first.windows,
        ),
    )
    nan = torch.full_like(rate, math.nan)
    second_scores = scores[1].invariance if len(scores) > 1 else nan
    above_chance = torch.where(measured, head.invariance - head.chance, torch.full_like(rate, -math.inf))
    top = torch.argsort(above_chance, descending=True, stable=True)[: min(cfg.top_latents, int(measured.sum()))]
    columns = (rate, head.invariance, head.shuffled, head.chance, head.between_window_share, second_scores)
    rows = [
        LatentInvariance(
            latent=i,
            firing_rate=r,
            invariance=v,
            invariance_shuffled=s,
            invariance_chance=c,
            between_window_share=b,
            invariance_second=v2,
        )
        for i, r, v, s, c, b, v2 in zip(top.tolist(), *(values[top].tolist() for values in columns), strict=True)
    ]
    return PositionInvarianceResult(
        metrics=metrics,
        top_latents=rows,
        histogram=_histogram(real, cfg.histogram_bins),
        histogram_shuffled=_histogram(null, cfg.histogram_bins),
        dense_latents=dense.nonzero().flatten().tolist(),
    )


def _bootstrap(real: torch.Tensor, null: torch.Tensor, samples: int, seed: int) -> tuple[float, float, float, float]:
    """95% intervals of the mean score and of its excess over the null, resampling latents (pairs kept)."""
    if real.numel() < 2:
        return (math.nan,) * 4
    generator = torch.Generator().manual_seed(seed + 1)
    picks = torch.randint(0, real.numel(), (samples, real.numel()), generator=generator)
    means, null_means = real[picks].mean(1), null[picks].mean(1)
    excess = (means - null_means) / (1 - null_means)
    levels = torch.tensor([0.025, 0.975], dtype=torch.float64)
    low, high = torch.quantile(means, levels).tolist()
    excess_low, excess_high = torch.quantile(excess, levels).tolist()
    return low, high, excess_low, excess_high


def _histogram(values: torch.Tensor, bins: int) -> list[int]:
    return torch.histc(values.double().clamp(0, 1), bins=bins, min=0, max=1).long().tolist()


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else math.nan


def _share(part: int, whole: int) -> float:
    return part / whole if whole else math.nan
