"""Boundary scores and a streaming AUROC (fixed histograms: memory independent of the number of tokens; kept on
the device of the scores, allocated with the first batch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def boundary_scores(vectors: torch.Tensor, window: int) -> tuple[torch.Tensor, int]:
    """b_t = 1 - cos(mean of vectors[t-w..t-1], mean of vectors[t..t+w-1]) for t = w..seq-w, `[b, seq-2w+1]`;
    returns the scores and the position of the first one (w). Zero-norm means give cos 0 (score 1)."""
    batch, seq, _ = vectors.shape
    cumulative = torch.nn.functional.pad(vectors.double().cumsum(1), (0, 0, 1, 0))
    t = torch.arange(window, seq - window + 1, device=vectors.device)
    before = cumulative[:, t] - cumulative[:, t - window]
    after = cumulative[:, t + window] - cumulative[:, t]
    cosine = torch.nn.functional.cosine_similarity(before, after, dim=-1, eps=1e-12)
    return 1 - cosine, window


@dataclass
class StreamingAUROC:
    """AUROC from histograms of positive and negative scores on [low, high]."""

    bins: int
    low: float = 0.0
    high: float = 2.0
    positives: torch.Tensor = field(init=False)
    negatives: torch.Tensor = field(init=False)
    sums: torch.Tensor = field(init=False)
    """Sum of the positive scores, sum of the negative ones."""

    def __post_init__(self) -> None:
        self._allocate(torch.device("cpu"))

    def _allocate(self, device: torch.device) -> None:
        self.positives = torch.zeros(self.bins, dtype=torch.float64, device=device)
        self.negatives = torch.zeros(self.bins, dtype=torch.float64, device=device)
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)

    def add(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        if self.positives.device != scores.device:  # the first batch decides where the histograms live
            assert not self.positives.any() and not self.negatives.any(), "scores must all come from one device"
            self._allocate(scores.device)
        labels = labels.to(scores.device)
        index = ((scores - self.low) / (self.high - self.low) * self.bins).long().clamp(0, self.bins - 1)
        # One bincount over (label, bin): no boolean indexing, so no host synchronisation per batch.
        counts = torch.bincount((index + self.bins * labels.long()).flatten(), minlength=2 * self.bins).double()
        self.negatives += counts[: self.bins]
        self.positives += counts[self.bins :]
        scores = scores.double()
        self.sums += torch.stack([torch.where(labels, scores, 0.0).sum(), torch.where(labels, 0.0, scores).sum()])

    @property
    def positive_sum(self) -> float:
        return float(self.sums[0])

    @property
    def negative_sum(self) -> float:
        return float(self.sums[1])

    def auroc(self) -> float:
        """P(positive > negative) + P(equal bin) / 2."""
        n_pos, n_neg = self.positives.sum(), self.negatives.sum()
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        negatives_below = torch.cumsum(self.negatives, 0) - self.negatives
        wins = (self.positives * negatives_below).sum() + 0.5 * (self.positives * self.negatives).sum()
        return float(wins / (n_pos * n_neg))
