"""Which latents to intervene on (SAE-Bench's unlearning rule) and the firing-rate-matched random control."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class FiringCounts:
    """Running per-latent firing counts over the scored (non-BOS) tokens of one side's selection windows."""

    fired: torch.Tensor
    """[d_sae] tokens where the latent is > 0."""
    activation: torch.Tensor
    """[d_sae] sum of the latent's activation where it fires."""
    tokens: int = 0
    """Tokens counted."""

    @classmethod
    def empty(cls, d_sae: int) -> FiringCounts:
        import torch

        return cls(torch.zeros(d_sae, dtype=torch.float64), torch.zeros(d_sae, dtype=torch.float64))

    def add(self, latents: torch.Tensor) -> None:
        """Count `latents [batch, positions, d_sae]` (already cut to the scored positions)."""
        flat = latents.reshape(-1, latents.shape[-1]).detach().double().cpu()
        firing = flat > 0
        self.fired += firing.sum(0)
        self.activation += (flat * firing).sum(0)
        self.tokens += flat.shape[0]

    @property
    def rate(self) -> torch.Tensor:
        return self.fired / max(self.tokens, 1)

    def mean_activation(self, latents: list[int]) -> float:
        """Mean activation where they fire, pooled over `latents` (0 when none of them fired)."""
        fired = float(self.fired[latents].sum()) if latents else 0.0
        return float(self.activation[latents].sum()) / fired if fired else 0.0


def select_latents(forget_rate: torch.Tensor, retain_rate: torch.Tensor, n: int, retain_threshold: float) -> list[int]:
    """The `n` latents firing most often on forget text among those firing on less than `retain_threshold` of
    retain tokens and more often on forget than on retain text (SAE-Bench's rule, plus that last guard);
    ties go to the lower index. Fewer when fewer qualify."""
    import torch

    qualifies = (retain_rate < retain_threshold) & (forget_rate > retain_rate)
    candidates = torch.nonzero(qualifies).flatten()
    # stable sort on the negated rate: equal rates keep index order
    order = torch.sort(-forget_rate[candidates], stable=True).indices
    return [int(i) for i in candidates[order][:n]]


def matched_null(pooled_rate: torch.Tensor, chosen: list[int], n_candidates: int, seed: int) -> list[int]:
    """One random latent per chosen latent, drawn among the `n_candidates` unchosen alive latents nearest to it in
    pooled (forget + retain) firing rate on a log scale, without replacement: the same amount of firing, no
    selection for topic. Fewer when the alive latents run out."""
    rng = random.Random(f"{seed}-topic-unlearning-null")
    rates = pooled_rate.tolist()
    taken = set(chosen)
    pool = [i for i, rate in enumerate(rates) if rate > 0 and i not in taken]
    picked: list[int] = []
    for latent in chosen:
        if not pool:
            break
        target = math.log(max(rates[latent], 1e-12))
        nearest = sorted(pool, key=lambda i: (abs(math.log(rates[i]) - target), i))[:n_candidates]
        pick = rng.choice(nearest)
        picked.append(pick)
        pool.remove(pick)
    return picked


def bootstrap_difference(
    forget: torch.Tensor, retain: torch.Tensor, n_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile interval of mean(forget) - mean(retain), forget and retain windows resampled independently."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    forget_index = torch.randint(len(forget), (n_resamples, len(forget)), generator=generator)
    retain_index = torch.randint(len(retain), (n_resamples, len(retain)), generator=generator)
    stats = forget.double()[forget_index].mean(1) - retain.double()[retain_index].mean(1)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(stats, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return low, high
