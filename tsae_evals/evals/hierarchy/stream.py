"""Streaming hierarchy statistics: firing counts, co-firing counts (upper x lower, its permutation nulls, lower x
lower) and explained-variance sums, whose size depends on the levels' widths, never on the tokens read. They are
counted on the device of the latents; the analysis runs once, at the end."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from custom_saes.hierarchical import HierarchicalSAE
from tsae_evals.evals.hierarchy.analysis import (
    NMISummary,
    decoder_grouping,
    jaccard,
    kmeans,
    nmi_summary,
    within_group_mean,
)
from tsae_evals.evals.hierarchy.config import HierarchyConfig
from tsae_evals.evals.hierarchy.result import (
    GroupingMetrics,
    HierarchyExclusions,
    HierarchyMetrics,
    HierarchyResult,
    LevelMetrics,
    MutualInformationMetrics,
    UpperLatent,
)
from tsae_evals.evals.streaming import ReferenceMetrics

EXACT_FLOAT32 = 2**24
"""Counts stay exact in float32 up to this many tokens; past it the count matrices are widened to float64."""
KMEANS_STREAM, PARTITION_STREAM = 1_000_003, 2_000_006
"""Added to the run seed for k-means and the random partitions, apart from the permutations' stream."""


@dataclass
class Fidelity:
    """Streaming explained variance of `target` by `estimate` over rows: 1 - |t - e|^2 / |t - mean t|^2."""

    rows: int = 0
    sums: torch.Tensor | None = None
    squares: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    errors: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))

    def add(self, target: torch.Tensor, estimate: torch.Tensor) -> None:
        target = target.double()
        if self.sums is None:
            self.sums = torch.zeros(target.shape[-1], dtype=torch.float64, device=target.device)
            self.squares, self.errors = self.squares.to(target.device), self.errors.to(target.device)
        self.rows += target.shape[0]
        self.sums += target.sum(0)
        self.squares += target.pow(2).sum()
        self.errors += (target - estimate.double()).pow(2).sum()

    def explained_variance(self) -> float:
        if self.sums is None:
            return math.nan
        variance = float(self.squares - self.sums.pow(2).sum() / self.rows)
        return 1 - float(self.errors) / variance if variance > 0 else math.nan


class HierarchyStatistics:
    """Counts over every token read: each latent's firings, upper x lower co-firing (and under each permutation of
    the upper codes across the tokens of a batch), lower x lower co-firing, and both levels' fidelity sums."""

    def __init__(self, d_lower: int, d_upper: int, permutations: int, seed: int) -> None:
        self.d_lower, self.d_upper, self.permutations = d_lower, d_upper, permutations
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same permutations on every device
        self.tokens = 0
        self.lower_fit, self.upper_fit = Fidelity(), Fidelity()
        # Placeholders without storage: the first batch allocates the counts on its device (for a 16k-latent SAE
        # split in halves, (2 + permutations) x 8k x 8k floats: 1.8 GB at 5 permutations).
        self._allocate(torch.device("meta"))

    def _allocate(self, device: torch.device) -> None:
        self.lower_counts = torch.zeros(self.d_lower, dtype=torch.float64, device=device)
        self.upper_counts = torch.zeros(self.d_upper, dtype=torch.float64, device=device)
        self.joint = torch.zeros(self.d_upper, self.d_lower, device=device)
        self.null_joint = torch.zeros(self.permutations, self.d_upper, self.d_lower, device=device)
        self.lower_joint = torch.zeros(self.d_lower, self.d_lower, device=device)

    def add(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        lower: torch.Tensor,
        upper: torch.Tensor,
        lower_hat: torch.Tensor,
        threshold: float = 0.0,
    ) -> None:
        """One batch of tokens (any leading shape): input and its reconstruction, both codes, f1_hat."""
        x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x_hat.shape[-1])
        lower, lower_hat = lower.reshape(-1, self.d_lower), lower_hat.reshape(-1, self.d_lower)
        upper = upper.reshape(-1, self.d_upper)
        if self.tokens == 0:  # the first batch decides the device
            self._allocate(lower.device)
        n = lower.shape[0]
        if self.tokens + n > EXACT_FLOAT32 and self.joint.dtype != torch.float64:
            self.joint, self.null_joint, self.lower_joint = (
                t.double() for t in (self.joint, self.null_joint, self.lower_joint)
            )
        self.tokens += n
        # 0/1 inputs are exact in float32 (and TF32); a batch's products sum exactly below 2^24 tokens.
        low, up = (lower > threshold).float(), (upper > threshold).float()
        self.lower_counts += low.sum(0).double()
        self.upper_counts += up.sum(0).double()
        self.joint += up.T @ low
        self.lower_joint += low.T @ low
        for k in range(self.permutations):
            order = torch.randperm(n, generator=self.generator).to(lower.device)
            self.null_joint[k] += up[order].T @ low
        self.lower_fit.add(x, x_hat)
        self.upper_fit.add(lower, lower_hat)


class HierarchyScorer:
    """Feeds HierarchyStatistics from `[f1, f2]` latents and analyses them once at the end."""

    def __init__(self, sae: HierarchicalSAE, cfg: HierarchyConfig, seed: int) -> None:
        self.sae, self.cfg, self.seed = sae, cfg, seed
        self.d_lower = sae.d_lower
        self.stats = HierarchyStatistics(self.d_lower, sae.cfg.d_sae - self.d_lower, cfg.null_permutations, seed)
        self.windows = 0

    def add(self, x: torch.Tensor, latents: torch.Tensor, x_hat: torch.Tensor) -> None:
        with torch.no_grad():
            lower, upper = latents[..., : self.d_lower], latents[..., self.d_lower :]
            lower_hat = self.sae.decode_upper_to_lower(upper)
            self.windows += latents.shape[0]
            self.stats.add(x, x_hat, lower, upper, lower_hat, self.cfg.activation_threshold)

    def finish(self) -> HierarchyResult:
        if self.windows == 0:
            raise ValueError("hierarchy received no windows")
        with torch.no_grad():
            return analyse(
                self.stats,
                self.sae.W_dec_upper.detach(),
                self.sae.W_dec_lower.detach(),
                self.cfg,
                self.windows,
                self.seed,
            )


def analyse(
    stats: HierarchyStatistics,
    upper_decoder: torch.Tensor,
    lower_decoder: torch.Tensor,
    cfg: HierarchyConfig,
    windows: int,
    seed: int,
) -> HierarchyResult:
    """Levels, mutual information and groupings from the counts; `upper_decoder [d_upper, d_lower]` (W_dec_upper),
    `lower_decoder [d_lower, d_in]` (W_dec_lower)."""
    n = stats.tokens
    lower_counts, upper_counts = stats.lower_counts, stats.upper_counts
    dense_lower, dense_upper = lower_counts / n > cfg.dense_threshold, upper_counts / n > cfg.dense_threshold
    measured_lower = (lower_counts >= cfg.min_firings) & ~dense_lower
    measured_upper = (upper_counts >= cfg.min_firings) & ~dense_upper

    real = nmi_summary(stats.joint, upper_counts, lower_counts, n, measured_upper, measured_lower)
    nulls = [
        nmi_summary(stats.null_joint[k], upper_counts, lower_counts, n, measured_upper, measured_lower)
        for k in range(stats.permutations)
    ]
    mutual = _mutual_information(real, nulls, measured_upper.cpu())

    owners = decoder_grouping(upper_decoder, measured_upper).to(lower_counts.device)
    grouping, labels, grouped = _grouping(stats, owners, measured_lower, lower_decoder, cfg, seed)

    levels = LevelMetrics(
        l0_lower=float(lower_counts.sum()) / n,
        l0_upper=float(upper_counts.sum()) / n,
        explained_variance_lower=stats.lower_fit.explained_variance(),
        explained_variance_upper=stats.upper_fit.explained_variance(),
        alive_lower=float((lower_counts > 0).double().mean()),
        alive_upper=float((upper_counts > 0).double().mean()),
    )
    metrics = HierarchyMetrics(
        levels=levels,
        mutual_information=mutual,
        grouping=grouping,
        exclusions=HierarchyExclusions(
            d_lower=stats.d_lower,
            d_upper=stats.d_upper,
            n_lower_measured=int(measured_lower.sum()),
            n_upper_measured=int(measured_upper.sum()),
            n_dense_excluded=int(dense_lower.sum() + dense_upper.sum()),
        ),
        reference=ReferenceMetrics(l0=levels.l0_lower + levels.l0_upper, tokens_evaluated=n, windows_evaluated=windows),
    )
    children = torch.bincount(owners[grouped].cpu(), minlength=stats.d_upper)
    null_max = torch.stack([null.max_nmi for null in nulls]).mean(0)
    counts = upper_counts.cpu()
    top = torch.argsort(counts.masked_fill(~measured_upper.cpu(), -1), descending=True)[: cfg.top_latents]
    top = top[measured_upper.cpu()[top]]
    rows = [
        UpperLatent(
            upper=j,
            firing_rate=float(counts[j]) / n,
            best_lower=int(real.best[j]),
            max_nmi=float(real.max_nmi[j]),
            max_nmi_null=float(null_max[j]),
            n_children=int(children[j]),
        )
        for j in top.tolist()
    ]
    sizes = torch.bincount(labels).sort(descending=True).values.tolist() if labels.numel() else []
    return HierarchyResult(metrics=metrics, top_latents=rows, group_sizes=sizes)


def _mutual_information(
    real: NMISummary, nulls: list[NMISummary], measured_upper: torch.Tensor
) -> MutualInformationMetrics:
    def mean_max(summary: NMISummary) -> float:
        values = summary.max_nmi[measured_upper]
        return float(values.mean()) if values.numel() else math.nan

    null_max = torch.tensor([mean_max(null) for null in nulls], dtype=torch.float64)
    null_pairs = torch.tensor([null.pair_mean for null in nulls], dtype=torch.float64)
    best_null = torch.stack([null.max_nmi[measured_upper] for null in nulls]).amax(0)
    above = real.max_nmi[measured_upper] > best_null
    return MutualInformationMetrics(
        max_nmi=mean_max(real),
        max_nmi_null=float(null_max.mean()),
        max_nmi_null_sd=float(null_max.std()),
        share_above_null=float(above.double().mean()) if above.numel() else math.nan,
        mean_nmi=real.pair_mean,
        mean_nmi_null=float(null_pairs.mean()),
        mean_nmi_null_sd=float(null_pairs.std()),
    )


def _grouping(
    stats: HierarchyStatistics,
    owners: torch.Tensor,
    measured_lower: torch.Tensor,
    lower_decoder: torch.Tensor,
    cfg: HierarchyConfig,
    seed: int,
) -> tuple[GroupingMetrics, torch.Tensor, torch.Tensor]:
    """The three groupings of the grouped lower latents and their quality; also the upper level's labels (0..k-1)
    and the mask of grouped lower latents."""
    grouped = measured_lower & (owners >= 0)
    members = grouped.nonzero().flatten()
    _, labels = torch.unique(owners[members], return_inverse=True)
    k = int(labels.max()) + 1 if labels.numel() else 0
    nan = math.nan
    if members.numel() < 2:
        metrics = GroupingMetrics(
            upper_jaccard=nan,
            kmeans_jaccard=nan,
            random_jaccard=nan,
            random_jaccard_sd=nan,
            upper_cosine=nan,
            kmeans_cosine=nan,
            random_cosine=nan,
            random_cosine_sd=nan,
            n_groups=k,
            n_lower_grouped=int(members.numel()),
            largest_group_share=1.0 if members.numel() else nan,
        )
        return metrics, labels.cpu(), grouped
    co_firing = jaccard(stats.lower_joint[members][:, members], stats.lower_counts[members])
    directions = lower_decoder.to(co_firing.device)[members].double()
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cosine = directions @ directions.T
    clusters = kmeans(
        directions,
        k,
        torch.Generator().manual_seed(seed + KMEANS_STREAM),
        cfg.kmeans_restarts,
        cfg.kmeans_iterations,
    )
    shuffles = torch.Generator().manual_seed(seed + PARTITION_STREAM)
    random_jaccard, random_cosine = [], []
    for _ in range(cfg.random_partitions):
        shuffled = labels[torch.randperm(labels.numel(), generator=shuffles).to(labels.device)]
        random_jaccard.append(within_group_mean(co_firing, shuffled))
        random_cosine.append(within_group_mean(cosine, shuffled))
    jaccards, cosines = torch.tensor(random_jaccard), torch.tensor(random_cosine)
    metrics = GroupingMetrics(
        upper_jaccard=within_group_mean(co_firing, labels),
        kmeans_jaccard=within_group_mean(co_firing, clusters),
        random_jaccard=float(jaccards.nanmean()),
        random_jaccard_sd=float(jaccards.std()),
        upper_cosine=within_group_mean(cosine, labels),
        kmeans_cosine=within_group_mean(cosine, clusters),
        random_cosine=float(cosines.nanmean()),
        random_cosine_sd=float(cosines.std()),
        n_groups=k,
        n_lower_grouped=int(members.numel()),
        largest_group_share=float(torch.bincount(labels).max()) / members.numel(),
    )
    return metrics, labels.cpu(), grouped
