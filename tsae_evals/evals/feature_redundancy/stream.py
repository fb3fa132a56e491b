"""Streaming Pearson correlation between latents: per-latent sums and a tracked x tracked float64 matrix of
cross-products (and the same for the roll null), whose size depends on the SAE's width (capped by `max_latents`),
never on the number of tokens read. They live on the device of the first batch; only the final matrices reach the
host.

Cross-products are float64 matrix products on the CPU (the reference values) and float32 products added into
float64 sums elsewhere (float64 matrix products are slow on GPUs; a batch's float32 product is exact to about
1e-7 relative).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import NormalDist

import torch

from tsae_evals.evals.feature_redundancy.config import FeatureRedundancyConfig
from tsae_evals.evals.feature_redundancy.result import (
    CorrelatedPair,
    CorrelationMetrics,
    DecoderMetrics,
    ExclusionMetrics,
    FeatureRedundancyMetrics,
    FeatureRedundancyResult,
    ReferenceMetrics,
)

_GATHER_ELEMENTS = 1 << 22
"""Index elements built at once when rolling columns (32 MB of int64)."""


def roll_columns(values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """`out[t, j] = values[(t + offsets[j]) % n, j]` for `values [n, m]`, a block of columns at a time."""
    n, m = values.shape
    out = torch.empty_like(values)
    rows = torch.arange(n, device=values.device)[:, None]
    step = max(1, _GATHER_ELEMENTS // max(1, n))
    for start in range(0, m, step):
        index = (rows + offsets[None, start : start + step]) % n
        out[:, start : start + step] = values[:, start : start + step].gather(0, index)
    return out


def cross_products(values: torch.Tensor) -> torch.Tensor:
    """`values.T @ values` in float64 for `values [n, m]`. On the CPU a sparse transpose times the dense batch when
    under 10% of the entries are non-zero (the same sums, about twice as fast at SAE sparsity)."""
    if values.device.type == "cpu" and (values != 0).sum() < 0.1 * values.numel():
        return torch.sparse.mm(values.T.to_sparse(), values).double()
    return (values.T @ values).double()


class RedundancyScorer:
    """Accumulates `latents [b, t, d_sae]` batches of scored positions (flattened to tokens) and, with
    `decoder [d_sae, d_in]` (None: decoder metrics are NaN), scores activation and decoder redundancy."""

    def __init__(
        self, d_sae: int, cfg: FeatureRedundancyConfig, seed: int, decoder: torch.Tensor | None = None
    ) -> None:
        self.d_sae = d_sae
        self.cfg = cfg
        self.decoder = None if decoder is None else decoder.detach().to("cpu", torch.float64)
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same offsets on every device
        self.tracked: torch.Tensor | None = None
        self.tracked_by = ""
        self.tokens = 0
        self.windows = 0
        self.active_total: torch.Tensor | None = None
        self.firings = torch.zeros(0, dtype=torch.long)
        self.sums = torch.zeros(0, dtype=torch.float64)
        self.gram = torch.zeros(0, 0, dtype=torch.float64)
        self.gram_shuffled: torch.Tensor | None = None

    def _track(self, flat: torch.Tensor) -> None:
        """Pick the tracked latents from the first batch and allocate the sums on its device."""
        if self.d_sae <= self.cfg.max_latents:
            self.tracked = torch.arange(self.d_sae, device=flat.device)
            self.tracked_by = f"all {self.d_sae} latents"
        else:
            counts = (flat > self.cfg.activation_threshold).sum(0)
            order = torch.argsort(counts, descending=True, stable=True)[: self.cfg.max_latents]
            self.tracked = order.sort().values
            self.tracked_by = (
                f"the {self.cfg.max_latents} of {self.d_sae} latents most often active in the first batch "
                f"({flat.shape[0]} tokens; ties by index)"
            )
        m, device = self.tracked.numel(), flat.device
        self.firings = torch.zeros(m, dtype=torch.long, device=device)
        self.sums = torch.zeros(m, dtype=torch.float64, device=device)
        self.gram = torch.zeros(m, m, dtype=torch.float64, device=device)
        if self.cfg.shuffle_null:
            self.gram_shuffled = torch.zeros(m, m, dtype=torch.float64, device=device)

    def add(self, latents: torch.Tensor) -> None:
        flat = latents.detach().reshape(-1, latents.shape[-1])
        if self.tracked is None:
            self._track(flat)
        assert self.tracked is not None
        self.windows += latents.shape[0]
        self.tokens += flat.shape[0]
        active = (flat > self.cfg.activation_threshold).sum()
        self.active_total = active if self.active_total is None else self.active_total + active
        values = flat if self.tracked.numel() == self.d_sae else flat[:, self.tracked]
        values = values.to(torch.float64 if values.device.type == "cpu" else torch.float32)
        self.firings += (values > self.cfg.activation_threshold).sum(0)
        self.sums += values.sum(0, dtype=torch.float64)
        self.gram += cross_products(values)
        if self.gram_shuffled is not None:
            offsets = torch.randint(0, values.shape[0], (values.shape[1],), generator=self.generator)
            self.gram_shuffled += cross_products(roll_columns(values, offsets.to(values.device)))

    def finish(self) -> FeatureRedundancyResult:
        if self.tracked is None or self.tokens == 0:
            raise ValueError("feature_redundancy received no windows")
        return self._result()

    def _result(self) -> FeatureRedundancyResult:
        cfg, n = self.cfg, self.tokens
        assert self.tracked is not None
        tracked, firings = self.tracked.cpu(), self.firings.cpu()
        sums, gram = self.sums.cpu(), self.gram.cpu()
        rate = firings.double() / n
        dense = rate > cfg.dense_threshold
        correlation, variance = pearson(sums, gram, n)
        counted = ~dense & (firings >= cfg.min_firings) & (variance > 0)
        index = counted.nonzero().flatten()
        m = index.numel()
        real = correlation[index][:, index]
        null = None
        if self.gram_shuffled is not None:
            null = pearson(sums, self.gram_shuffled.cpu(), n)[0][index][:, index]
        rows, cols = torch.triu_indices(m, m, offset=1)
        pairs, pairs_null = real[rows, cols], None if null is None else null[rows, cols]
        redundant = pairs > cfg.redundancy_threshold
        cosine = None
        if self.decoder is not None:
            directions = self.decoder[tracked[index]]
            directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            cosine = directions @ directions.T
        d_in = self.decoder.shape[1] if self.decoder is not None else 0
        metrics = FeatureRedundancyMetrics(
            correlation=CorrelationMetrics(
                mean_abs_r=_mean(pairs.abs()),
                mean_abs_r_shuffled=_mean(pairs_null.abs()) if pairs_null is not None else math.nan,
                mean_abs_r_chance=math.sqrt(2 / (math.pi * n)),
                redundant_pair_fraction=_mean(redundant.double()),
                redundant_pair_fraction_shuffled=(
                    _mean((pairs_null > cfg.redundancy_threshold).double()) if pairs_null is not None else math.nan
                ),
                redundant_pair_fraction_chance=1 - NormalDist().cdf(cfg.redundancy_threshold * math.sqrt(n)),
                n_redundant_pairs=int(redundant.sum()),
                mean_max_r=_mean_max(real),
                mean_max_r_shuffled=_mean_max(null) if null is not None else math.nan,
                mean_max_r_chance=expected_maximum(m - 1) / math.sqrt(n),
            ),
            decoder=DecoderMetrics(
                mean_max_cosine=_mean_max(cosine) if cosine is not None else math.nan,
                mean_max_cosine_chance=expected_maximum(m - 1) / math.sqrt(d_in) if d_in else math.nan,
                redundant_pair_cosine=(
                    _mean(cosine[rows[redundant], cols[redundant]]) if cosine is not None else math.nan
                ),
            ),
            exclusions=ExclusionMetrics(
                n_latents=self.d_sae,
                n_latents_tracked=tracked.numel(),
                n_dense_excluded=int(dense.sum()),
                n_latents_counted=m,
                n_pairs=pairs.numel(),
            ),
            reference=ReferenceMetrics(
                l0=float(self.active_total) / n if self.active_total is not None else math.nan,
                tokens_evaluated=n,
                windows_evaluated=self.windows,
            ),
        )
        top = torch.argsort(pairs, descending=True, stable=True)[: cfg.top_pairs]
        top_pairs = [
            CorrelatedPair(
                latent_a=int(tracked[index[rows[k]]]),
                latent_b=int(tracked[index[cols[k]]]),
                correlation=float(pairs[k]),
                correlation_shuffled=float(pairs_null[k]) if pairs_null is not None else math.nan,
                decoder_cosine=float(cosine[rows[k], cols[k]]) if cosine is not None else math.nan,
                firing_rate_a=float(rate[index[rows[k]]]),
                firing_rate_b=float(rate[index[cols[k]]]),
            )
            for k in top.tolist()
        ]
        block = torch.argsort(firings[index], descending=True, stable=True)[: cfg.block_size]
        return FeatureRedundancyResult(
            metrics=metrics,
            top_pairs=top_pairs,
            block_latents=tracked[index[block]].tolist(),
            block_correlation=real[block][:, block].tolist(),
            tracked_by=self.tracked_by,
            dense_latents=tracked[dense].tolist(),
        )


def pearson(sums: torch.Tensor, gram: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlation matrix and variances from per-latent sums `[m]` and cross-products `[m, m]` over `n` tokens (NaN
    rows and columns for latents without variance)."""
    mean = sums / n
    covariance = gram / n - mean[:, None] * mean[None, :]
    variance = covariance.diagonal().clamp_min(0)
    scale = variance.sqrt()
    denominator = scale[:, None] * scale[None, :]
    correlation = torch.where(denominator > 0, covariance / denominator.clamp_min(1e-300), math.nan)
    return correlation.clamp(-1, 1), variance


def expected_maximum(k: int) -> float:
    """Expected maximum of k independent standard normals (Blom's approximation; NaN for k < 1)."""
    if k < 1:
        return math.nan
    return NormalDist().inv_cdf((k - 0.375) / (k + 0.25))


def _mean_max(matrix: torch.Tensor) -> float:
    """Mean over rows of the largest off-diagonal entry of a square matrix (NaN under two rows)."""
    if matrix.shape[0] < 2:
        return math.nan
    off = matrix.clone()
    off.fill_diagonal_(-math.inf)
    return float(off.max(1).values.mean())


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else math.nan


def score_redundancy(
    batches: Iterable[torch.Tensor],
    d_sae: int,
    cfg: FeatureRedundancyConfig,
    seed: int,
    decoder: torch.Tensor | None = None,
) -> FeatureRedundancyResult:
    """Score every batch of an iterable in one pass (see RedundancyScorer)."""
    scorer = RedundancyScorer(d_sae, cfg, seed, decoder)
    for latents in batches:
        scorer.add(latents)
    return scorer.finish()
