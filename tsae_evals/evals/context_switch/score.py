"""Boundary scores and a streaming AUROC (fixed histograms: memory independent of the number of tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def boundary_scores(vectors: torch.Tensor, window: int) -> tuple[torch.Tensor, int]:
    """b_t = 1 - cos(mean of vectors[t-w..t-1], mean of vectors[t..t+w-1]) for t = w..seq-w, `[b, seq-2w+1]`;
    returns the scores and the position of the first one (w). Zero-norm means give cos 0 (score 1)."""
    batch, seq, _ = vectors.shape
    cumulative = torch.nn.functional.pad(vectors.double().cumsum(1), (0, 0, 1, 0))
    t = torch.arange(window, seq - window + 1)
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
    positive_sum: float = 0.0
    negative_sum: float = 0.0

    def __post_init__(self) -> None:
        self.positives = torch.zeros(self.bins, dtype=torch.float64)
        self.negatives = torch.zeros(self.bins, dtype=torch.float64)

    def add(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        index = ((scores - self.low) / (self.high - self.low) * self.bins).long().clamp(0, self.bins - 1)
        self.positives += torch.bincount(index[labels], minlength=self.bins).double()
        self.negatives += torch.bincount(index[~labels], minlength=self.bins).double()
        self.positive_sum += float(scores[labels].sum())
        self.negative_sum += float(scores[~labels].sum())

    def auroc(self) -> float:
        """P(positive > negative) + P(equal bin) / 2."""
        n_pos, n_neg = self.positives.sum(), self.negatives.sum()
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        negatives_below = torch.cumsum(self.negatives, 0) - self.negatives
        wins = (self.positives * negatives_below).sum() + 0.5 * (self.positives * self.negatives).sum()
        return float(wins / (n_pos * n_neg))
