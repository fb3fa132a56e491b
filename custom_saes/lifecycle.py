"""Feature lifecycle tracking: births, deaths and lifetimes of latents as an SAE runs over sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from custom_saes.runs import run_lengths


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
        done = ~runs.right_censored
        self.deaths.index_add_(0, runs.latent[done], ones[done])
        self.censored_runs.index_add_(0, runs.latent[~done], ones[~done])
        self.lifetime_total.index_add_(0, runs.latent[done], runs.length[done])
        self.lifetime_histogram.index_add_(0, runs.length[done].clamp_max(self.max_lifetime), ones[done])

    def mean_lifetime(self) -> torch.Tensor:
        """Mean completed lifetime per latent; NaN where no run has completed."""
        return torch.where(self.deaths > 0, self.lifetime_total / self.deaths.clamp_min(1), float("nan"))
