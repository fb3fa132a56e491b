"""Feature lifecycle tracking: births, deaths and lifetimes of latents as an SAE runs over sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RunLengths:
    """Maximal runs of consecutive active positions in a `[batch, seq, latents]` trace."""

    latent: torch.Tensor
    """Latent index of each run."""
    start: torch.Tensor
    """Position where the run begins."""
    length: torch.Tensor
    """Positions in the run (its lifetime)."""
    censored: torch.Tensor
    """True when the run touches the end of its sequence, so its true length is unknown."""


def run_lengths(active: torch.Tensor) -> RunLengths:
    """All runs of `active [batch, seq, latents]` (bool), ordered by (sequence, latent, start)."""
    by_latent = active.transpose(1, 2)  # [batch, latents, seq]: runs are contiguous along the last axis
    before = torch.nn.functional.pad(by_latent[..., :-1], (1, 0))
    after = torch.nn.functional.pad(by_latent[..., 1:], (0, 1))
    starts = (by_latent & ~before).nonzero()
    ends = (by_latent & ~after).nonzero()
    # Runs alternate start/end within each (sequence, latent), so the k-th start pairs with the k-th end.
    seq = active.shape[1]
    return RunLengths(
        latent=starts[:, 1],
        start=starts[:, 2],
        length=ends[:, 2] - starts[:, 2] + 1,
        censored=ends[:, 2] == seq - 1,
    )


@dataclass
class FeatureLifecycleTracker:
    """Counts, per latent, births (inactive -> active, or active at a sequence's first position), deaths
    (active -> inactive inside a sequence) and the lengths of completed runs; runs cut off by a sequence's end
    are counted as censored, not as lifetimes."""

    d_sae: int
    """Number of latents tracked."""
    max_lifetime: int = 128
    """Lifetimes longer than this land in the histogram's last bin."""
    births: torch.Tensor = field(init=False)
    """Births per latent."""
    deaths: torch.Tensor = field(init=False)
    """Deaths per latent."""
    lifetime_total: torch.Tensor = field(init=False)
    """Sum of completed lifetimes per latent (mean lifetime = lifetime_total / deaths)."""
    censored_runs: torch.Tensor = field(init=False)
    """Runs per latent still alive at a sequence's end."""
    lifetime_histogram: torch.Tensor = field(init=False)
    """Completed runs by length: index L counts lifetimes of L (index 0 unused)."""

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        zeros = torch.zeros(self.d_sae, dtype=torch.long)
        self.births, self.deaths, self.lifetime_total, self.censored_runs = (zeros.clone() for _ in range(4))
        self.lifetime_histogram = torch.zeros(self.max_lifetime + 1, dtype=torch.long)

    @torch.no_grad()
    def observe(self, feature_acts: torch.Tensor, threshold: float = 0.0) -> None:
        """Add one batch of sequences `[batch, seq, d_sae]` (or one sequence `[seq, d_sae]`)."""
        acts = feature_acts if feature_acts.dim() == 3 else feature_acts[None]
        runs = run_lengths(acts.detach().cpu() > threshold)
        ones = torch.ones_like(runs.latent)
        self.births.index_add_(0, runs.latent, ones)
        done = ~runs.censored
        self.deaths.index_add_(0, runs.latent[done], ones[done])
        self.censored_runs.index_add_(0, runs.latent[runs.censored], ones[runs.censored])
        self.lifetime_total.index_add_(0, runs.latent[done], runs.length[done])
        self.lifetime_histogram.index_add_(0, runs.length[done].clamp_max(self.max_lifetime), ones[done])

    def mean_lifetime(self) -> torch.Tensor:
        """Mean completed lifetime per latent; NaN where no run has completed."""
        return torch.where(self.deaths > 0, self.lifetime_total / self.deaths.clamp_min(1), float("nan"))
