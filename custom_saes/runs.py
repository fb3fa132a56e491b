"""Runs of consecutive active positions: the primitive behind lifetimes, births and deaths (the lifecycle
tracker and the feature_lifetimes eval both count them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RunLengths:
    """Maximal runs of consecutive active positions in a `[batch, seq, latents]` trace, ordered by
    (sequence, latent, start)."""

    sequence: torch.Tensor
    """Batch index of each run."""
    latent: torch.Tensor
    """Latent index of each run."""
    start: torch.Tensor
    """Position where the run begins."""
    length: torch.Tensor
    """Positions in the run (its lifetime if complete)."""
    left_censored: torch.Tensor
    """True when the run starts at the sequence's first position (it may have begun earlier)."""
    right_censored: torch.Tensor
    """True when the run touches the sequence's end (it may go on)."""


def run_lengths(active: torch.Tensor) -> RunLengths:
    """All runs of `active [batch, seq, latents]` (bool).

    One `nonzero` (one host sync on a GPU): along each (sequence, latent) trace, padded with an inactive position
    at both ends, the value changes at each run's start and just after its end, so the changes alternate start,
    end + 1 and the k-th pair of changes is the k-th run."""
    batch, length, width = active.shape
    padded = torch.zeros(batch, width, length + 2, dtype=torch.int8, device=active.device)
    padded[:, :, 1:-1] = active.transpose(1, 2)  # runs lie along the last axis; nonzero is faster contiguous
    # Change i sits between padded positions i and i + 1, i.e. between trace positions i - 1 and i.
    changes = (padded[..., 1:] != padded[..., :-1]).nonzero().view(-1, 2, 3)
    starts, stops = changes[:, 0], changes[:, 1, 2]  # stop: one past the run's last position
    return RunLengths(
        sequence=starts[:, 0],
        latent=starts[:, 1],
        start=starts[:, 2],
        length=stops - starts[:, 2],
        left_censored=starts[:, 2] == 0,
        right_censored=stops == length,
    )
