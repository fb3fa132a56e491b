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
    """All runs of `active [batch, seq, latents]` (bool)."""
    by_latent = active.transpose(1, 2).contiguous()  # runs lie along the last axis; nonzero is faster contiguous
    before = torch.nn.functional.pad(by_latent[..., :-1], (1, 0))
    after = torch.nn.functional.pad(by_latent[..., 1:], (0, 1))
    starts = (by_latent & ~before).nonzero()
    ends = (by_latent & ~after).nonzero()
    # Within a (sequence, latent) starts and ends alternate, so the k-th start pairs with the k-th end.
    return RunLengths(
        sequence=starts[:, 0],
        latent=starts[:, 1],
        start=starts[:, 2],
        length=ends[:, 2] - starts[:, 2] + 1,
        left_censored=starts[:, 2] == 0,
        right_censored=ends[:, 2] == active.shape[1] - 1,
    )
