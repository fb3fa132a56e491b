"""The hierarchy eval's measurements, as functions of counts and weights: binary mutual information, the upper
level's grouping of lower latents, seeded k-means, and within-group quality."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


def binary_entropy(count: torch.Tensor, n: int) -> torch.Tensor:
    """Entropy in bits of a binary variable that is 1 on `count` of `n` samples."""
    p = count.double() / n
    return _h(p) + _h(1 - p)


def _h(p: torch.Tensor) -> torch.Tensor:
    """-p log2 p with 0 log 0 = 0."""
    return torch.where(p > 0, -p * torch.log2(p.clamp_min(1e-300)), torch.zeros_like(p))


def binary_mutual_information(
    joint: torch.Tensor, count_a: torch.Tensor, count_b: torch.Tensor, n: int
) -> torch.Tensor:
    """Plug-in MI in bits between binary variables `a [A]` and `b [B]` from co-firing counts `joint [A, B]`, firing
    counts and the number of samples: `[A, B]`."""
    n11 = joint.double()
    a, b = count_a.double()[:, None], count_b.double()[None, :]
    cells = (n11, a - n11, b - n11, n - a - b + n11)  # (1,1), (1,0), (0,1), (0,0)
    margins = ((a, b), (a, n - b), (n - a, b), (n - a, n - b))
    total = torch.zeros_like(n11)
    for cell, (left, right) in zip(cells, margins, strict=True):
        # p log2(p / (pa pb)) = (c/n) log2(c n / (ca cb)); empty cells add 0
        ratio = cell * n / (left * right).clamp_min(1e-300)
        total += torch.where(cell > 0, cell / n * torch.log2(ratio.clamp_min(1e-300)), torch.zeros_like(n11))
    return total.clamp_min(0)  # rounding can leave -1e-17 for independent variables


def normalised_mutual_information(
    joint: torch.Tensor, count_a: torch.Tensor, count_b: torch.Tensor, n: int
) -> torch.Tensor:
    """MI / sqrt(H(a) H(b)): 1 when `a` and `b` fire on the same samples; NaN where either never varies."""
    entropy = binary_entropy(count_a, n)[:, None] * binary_entropy(count_b, n)[None, :]
    mi = binary_mutual_information(joint, count_a, count_b, n)
    return torch.where(entropy > 0, mi / entropy.clamp_min(1e-300).sqrt(), math.nan)


class NMISummary(NamedTuple):
    """Per upper latent: its best lower partner; over all pairs: the NMI sum (measured latents only)."""

    max_nmi: torch.Tensor
    """`[A]`: largest NMI with a measured lower latent (NaN for unmeasured upper latents)."""
    best: torch.Tensor
    """`[A]`: the lower latent reaching it (-1 for unmeasured upper latents)."""
    pair_mean: float
    """Mean NMI over measured (upper, lower) pairs."""


def nmi_summary(
    joint: torch.Tensor,
    count_a: torch.Tensor,
    count_b: torch.Tensor,
    n: int,
    measured_a: torch.Tensor,
    measured_b: torch.Tensor,
    chunk: int = 1024,
) -> NMISummary:
    """Summarise NMI over `joint [A, B]` chunk by chunk of rows (memory: `chunk x B` doubles at a time)."""
    width = joint.shape[0]
    max_nmi = torch.full((width,), math.nan, dtype=torch.float64, device=joint.device)
    best = torch.full((width,), -1, dtype=torch.long, device=joint.device)
    total, pairs = 0.0, 0
    columns = measured_b.nonzero().flatten()
    if columns.numel() == 0:
        return NMISummary(max_nmi.cpu(), best.cpu(), math.nan)
    for first in range(0, width, chunk):
        rows = first + measured_a[first : first + chunk].nonzero().flatten()
        if rows.numel() == 0:
            continue
        nmi = normalised_mutual_information(joint[rows][:, columns], count_a[rows], count_b[columns], n)
        nmi = nmi.nan_to_num(0.0)  # measured latents vary; this only guards a latent firing on every token
        values, where = nmi.max(1)
        max_nmi[rows], best[rows] = values, columns[where]
        total += float(nmi.sum())
        pairs += nmi.numel()
    return NMISummary(max_nmi.cpu(), best.cpu(), total / pairs if pairs else math.nan)


def decoder_grouping(upper_decoder: torch.Tensor, allowed_upper: torch.Tensor | None = None) -> torch.Tensor:
    """Owner of each lower latent: the allowed upper latent with the largest weight onto it in `upper_decoder
    [d_upper, d_lower]` (W_dec_upper), or -1 where no allowed upper latent writes it positively."""
    weights = upper_decoder.detach().double()
    if allowed_upper is not None:
        weights = weights.masked_fill(~allowed_upper[:, None].to(weights.device), -math.inf)
    if weights.shape[0] == 0:
        return torch.full((weights.shape[1],), -1, dtype=torch.long, device=weights.device)
    values, owners = weights.max(0)
    return torch.where(values > 0, owners, -1)


def kmeans(
    points: torch.Tensor, k: int, generator: torch.Generator, restarts: int = 3, iterations: int = 100
) -> torch.Tensor:
    """Labels `[n]` of Lloyd's k-means on `points [n, d]` from k-means++ starts, the restart of lowest within-cluster
    sum of squares kept. Random draws come from the CPU `generator`, so labels do not depend on the device."""
    points = points.double()
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= {n} points, got k={k}")
    best_labels, best_inertia = None, math.inf
    for _ in range(restarts):
        centers = _kmeans_plus_plus(points, k, generator)
        labels = torch.full((n,), -1, dtype=torch.long, device=points.device)
        for _ in range(iterations):
            distances = torch.cdist(points, centers).pow(2)
            new_labels = distances.argmin(1)
            if torch.equal(new_labels, labels):
                break
            labels = new_labels
            sums = torch.zeros_like(centers).index_add_(0, labels, points)
            counts = torch.bincount(labels, minlength=k)
            centers = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
        inertia = float(torch.cdist(points, centers).pow(2).gather(1, labels[:, None]).sum())
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    assert best_labels is not None
    return best_labels


def _kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k starting centers, each drawn with probability proportional to its squared distance to the chosen ones."""
    n = points.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    nearest = (points - points[chosen[0]]).pow(2).sum(1)
    for _ in range(1, k):
        weights = nearest.cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than k: take any point not yet chosen
            pick = int(torch.ones(n).index_fill_(0, torch.tensor(chosen), 0).multinomial(1, generator=generator))
        else:
            pick = int(weights.multinomial(1, generator=generator))
        chosen.append(pick)
        nearest = torch.minimum(nearest, (points - points[pick]).pow(2).sum(1))
    return points[chosen].clone()


def within_group_mean(similarity: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of `similarity [n, n]` over pairs i < j with the same label (NaN when no group has two members)."""
    same = labels[:, None] == labels[None, :]
    pairs = torch.triu(same, diagonal=1)
    count = int(pairs.sum())
    return float(similarity.double()[pairs].sum()) / count if count else math.nan


def jaccard(joint: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Firing Jaccard `[n, n]` from co-firing counts `joint [n, n]` and firing counts `[n]` (0 where neither fired)."""
    joint, counts = joint.double(), counts.double()
    union = counts[:, None] + counts[None, :] - joint
    return torch.where(union > 0, joint / union.clamp_min(1e-300), torch.zeros_like(joint))
