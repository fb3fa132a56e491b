"""Streaming temporal statistics: per-batch reductions whose state has a fixed size, whatever the token count.

Each batch is `latents [b, t, d_sae]` and `inputs [b, t, d_in]` for whole windows (BOS removed). The state is
sums and counts per lag and per latent, so memory never grows with the number of windows read. It lives on the
device of the first batch (allocated then), so a GPU run copies only the final summaries to the host; random
draws come from CPU generators (the same numbers on any device) and are moved to the batch's device. The shuffle
null applies one random permutation of positions per window to every tensor: it keeps every latent's rate and
every position's active set, and destroys order only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from tsae_evals.evals.random_sae import RandomTopK
from tsae_evals.evals.shuffle import gather_positions, shuffle_order
from tsae_evals.evals.temporal_stability.config import TemporalStabilityConfig
from tsae_evals.evals.temporal_stability.result import (
    AutocorrelationMetrics,
    CosineMetrics,
    ExclusionMetrics,
    JaccardMetrics,
    LagRow,
    RandomSAEMetrics,
    ReferenceMetrics,
    SmoothnessMetrics,
    TemporalStabilityMetrics,
    TemporalStabilityResult,
    excess_over_null,
)
from tsae_evals.evals.temporal_stability.smoothness import LipschitzSmoothness, smoothness_parts


@dataclass
class PairStatistic:
    """Mean of a per-position-pair score over the pairs where it is defined (sums kept on the values' device)."""

    total: torch.Tensor | None = None
    count: torch.Tensor | None = None

    def add(self, values: torch.Tensor, defined: torch.Tensor) -> None:
        total = torch.where(defined, values.double(), 0.0).sum()
        count = defined.sum()
        self.total = total if self.total is None else self.total + total
        self.count = count if self.count is None else self.count + count

    @property
    def mean(self) -> float:
        count = 0 if self.count is None else int(self.count)
        return float(self.total) / count if count and self.total is not None else float("nan")


@dataclass
class LagAutocorrelation:
    """Per-latent mean over windows of the lag-k autocorrelation, for k = 1..max_lag.

    Within each window a latent's trace (zeros included) is centred on its own window mean; a window counts for
    a latent only when the latent fires at least `min_firings` times there and is not constant.
    """

    d_sae: int
    max_lag: int
    min_firings: int
    sums: torch.Tensor = field(init=False)
    windows: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self._allocate(torch.device("cpu"))

    def _allocate(self, device: torch.device) -> None:
        self.sums = torch.zeros(self.max_lag, self.d_sae, dtype=torch.float64, device=device)
        self.windows = torch.zeros(self.d_sae, dtype=torch.long, device=device)

    def qualifying(
        self, latents: torch.Tensor, firings: torch.Tensor, included: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (window, latent) traces that count: `window [p]`, `latent [p]` and `trace [p, t]` (float64), from `latents
        [b, t, d_sae]` and their per-window firing counts `firings [b, d_sae]`. Only these rows are worked on: a
        small share of [b, t, d_sae], so float64 costs little. The nonzero is this statistic's one host sync."""
        qualifies = (firings >= self.min_firings) & included
        window, latent = qualifies.nonzero().unbind(1)
        return window, latent, latents[window, :, latent].double()

    def add(self, latent: torch.Tensor, trace: torch.Tensor) -> None:
        """Add the traces `trace [p, t]` of latents `latent [p]` (see qualifying)."""
        if self.sums.device != trace.device:  # first batch on another device (nothing summed yet)
            assert not self.windows.any(), "batches must all come from one device"
            self._allocate(trace.device)
        if latent.numel() == 0:
            return
        centred = trace - trace.mean(1, keepdim=True)
        energy = centred.pow(2).sum(1)  # [p]
        measured = energy > 0
        safe_energy = torch.where(measured, energy, torch.ones_like(energy))
        lags = range(1, min(self.max_lag, trace.shape[1] - 1) + 1)
        lagged = torch.stack([(centred[:, :-lag] * centred[:, lag:]).sum(1) for lag in lags]) / safe_energy
        self.sums[: len(lags)].index_add_(1, latent, torch.where(measured, lagged, torch.zeros_like(lagged)))
        self.windows.index_add_(0, latent, measured.long())

    def per_latent(self) -> torch.Tensor:
        """[max_lag, n_measured] mean autocorrelation of each latent measured in at least one window."""
        measured = self.windows > 0
        return self.sums[:, measured] / self.windows[measured]

    @property
    def n_measured(self) -> int:
        return int((self.windows > 0).sum())


@dataclass
class StabilityStatistics:
    """All temporal-stability sums for one ordering of the positions (real or shuffled)."""

    d_sae: int
    max_lag: int
    min_firings: int
    jaccard: PairStatistic = field(default_factory=PairStatistic)
    weighted_jaccard: PairStatistic = field(default_factory=PairStatistic)
    cosine: PairStatistic = field(default_factory=PairStatistic)
    input_cosine: PairStatistic = field(default_factory=PairStatistic)
    autocorrelation: LagAutocorrelation = field(init=False)

    def __post_init__(self) -> None:
        self.autocorrelation = LagAutocorrelation(self.d_sae, self.max_lag, self.min_firings)

    def add(
        self,
        latents: torch.Tensor,
        inputs: torch.Tensor | None,
        threshold: float,
        included: torch.Tensor,
        firings: torch.Tensor | None = None,
        shuffled_from: tuple[PositionSums, torch.Tensor] | None = None,
    ) -> PositionSums:
        """Add a batch; `included` [d_sae] marks the latents that count (dense ones are excluded); the input's
        own statistics are skipped when `inputs` is None; `firings [b, d_sae]`, when given, counts each window's
        positions where latents > threshold. Elementwise work is float32, sums are float64 (per-position sums over
        the latents: float64 on the CPU, float32 on an accelerator, where float64 is slow and a float64 reduction
        first copies the whole [b, t, d_sae] tensor to float64).

        Returns the batch's PositionSums. `shuffled_from` = (that of a batch, order) says `latents` are that batch
        with positions shuffled by `order [b, t]` (shuffle.shuffle_positions): its sums are then reordered, not recomputed
        (the same numbers: a sum over one position's latents does not depend on where the position is)."""
        wide = _position_sum_dtype(latents)
        kept = latents.float() * included
        active = kept > threshold
        magnitudes = kept.clamp_min(0)
        if shuffled_from is None:
            if firings is None:
                firings = (latents > threshold).sum(1, dtype=torch.int32)
            window, latent, trace = self.autocorrelation.qualifying(kept, firings, included)
            positions = PositionSums(
                counts=active.sum(-1, dtype=torch.int32),
                totals=magnitudes.sum(-1, dtype=wide).double(),
                norms=_norms(kept),
                window=window,
                latent=latent,
                trace=trace,
            )
        else:
            positions = shuffled_from[0].reordered(shuffled_from[1])
        # |A_t u A_t+1| = |A_t| + |A_t+1| - |A_t n A_t+1| and sum max = sum a + sum b - sum min: one pass each
        # over the big tensor instead of two.
        counts, totals = positions.counts, positions.totals
        intersection = (active[:, :-1] & active[:, 1:]).sum(-1, dtype=torch.int32)
        union = counts[:, :-1] + counts[:, 1:] - intersection
        self.jaccard.add(intersection / union.clamp(min=1), union > 0)
        overlap = torch.minimum(magnitudes[:, :-1], magnitudes[:, 1:]).sum(-1, dtype=wide).double()
        extent = totals[:, :-1] + totals[:, 1:] - overlap
        self.weighted_jaccard.add(overlap / extent.clamp_min(1e-300), extent > 0)
        self.cosine.add(*_cosine((kept[:, :-1] * kept[:, 1:]).sum(-1, dtype=wide).double(), positions.norms))
        if inputs is not None:
            self.input_cosine.add(*_successive_cosine(inputs))
        self.autocorrelation.add(positions.latent, positions.trace)
        return positions


@dataclass
class PositionSums:
    """What StabilityStatistics.add computes per position or per window of a batch, which a shuffle of the
    positions only reorders."""

    counts: torch.Tensor
    """[b, t] active latents."""
    totals: torch.Tensor
    """[b, t] sum of the clamped magnitudes (float64)."""
    norms: torch.Tensor
    """[b, t] L2 norm of the latents (float64)."""
    window: torch.Tensor
    """[p] window of each autocorrelation trace."""
    latent: torch.Tensor
    """[p] latent of each autocorrelation trace."""
    trace: torch.Tensor
    """[p, t] the traces that count for the autocorrelation (float64)."""

    def reordered(self, order: torch.Tensor) -> PositionSums:
        """The same sums for the batch with its positions shuffled by `order [b, t]` (shuffle.shuffle_positions)."""
        return PositionSums(
            counts=self.counts.gather(1, order),
            totals=self.totals.gather(1, order),
            norms=self.norms.gather(1, order),
            window=self.window,
            latent=self.latent,
            trace=self.trace.gather(1, order[self.window]),
        )


def _position_sum_dtype(values: torch.Tensor) -> torch.dtype:
    """Accumulator of per-position sums over a `[b, t, width]` tensor: float64 on the CPU (the reference values),
    float32 elsewhere (float64 is slow on GPUs; float32 agrees to about 1e-7 over a few thousand latents)."""
    return torch.float64 if values.device.type == "cpu" else torch.float32


def _norms(vectors: torch.Tensor) -> torch.Tensor:
    """[b, t] float64 L2 norms of `vectors [b, t, width]` (float32): float64 sums of squares on the CPU, a fused
    float32 norm elsewhere."""
    if _position_sum_dtype(vectors) == torch.float64:
        return vectors.pow(2).sum(-1, dtype=torch.float64).sqrt()
    return torch.linalg.vector_norm(vectors, dim=-1).double()


def _successive_cosine(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    vectors = vectors.float()
    products = (vectors[:, :-1] * vectors[:, 1:]).sum(-1, dtype=_position_sum_dtype(vectors)).double()
    return _cosine(products, _norms(vectors))


def _cosine(products: torch.Tensor, norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of successive positions from their dot products `[b, t - 1]` and norms `[b, t]`, and where defined."""
    denominators = norms[:, :-1] * norms[:, 1:]
    defined = denominators > 0
    return products / denominators.clamp(min=torch.finfo(torch.float64).tiny), defined


@dataclass
class ReconstructionStatistics:
    """L0 and explained variance of the same tokens, reported beside every temporal score (sums on the device)."""

    tokens: int = 0
    sums: list[torch.Tensor] | None = None
    """Active latents, squared error, per-dimension input sum, input square sum."""

    def add(self, latents: torch.Tensor, inputs: torch.Tensor, reconstruction: torch.Tensor, threshold: float) -> None:
        flat_inputs = inputs.reshape(-1, inputs.shape[-1]).double()
        self.tokens += flat_inputs.shape[0]
        sums = [
            (latents > threshold).sum(),
            (flat_inputs - reconstruction.reshape(flat_inputs.shape).double()).pow(2).sum(),
            flat_inputs.sum(0),
            flat_inputs.pow(2).sum(),
        ]
        self.sums = sums if self.sums is None else [a + b for a, b in zip(self.sums, sums, strict=True)]

    @property
    def mean_l0(self) -> float:
        return float(self.sums[0]) / self.tokens if self.sums is not None else float("nan")

    @property
    def explained_variance(self) -> float:
        if self.sums is None:
            return float("nan")
        _, squared_error, input_sum, input_square_sum = self.sums
        total_variance = float(input_square_sum) - float(input_sum.pow(2).sum()) / self.tokens
        return 1.0 - float(squared_error) / total_variance


def position_explained_variance(latents: torch.Tensor) -> torch.Tensor:
    """Per latent, the share of its variance explained by position in the window (between-position variance of
    the per-position means over total variance), on `[b, t, d_sae]`; 0 for constant latents."""
    values = latents.double()
    mean = values.mean((0, 1))
    total = (values - mean).pow(2).sum((0, 1))
    between = values.shape[0] * (values.mean(0) - mean).pow(2).sum(0)
    return torch.where(total > 0, between / total.clamp_min(1e-300), torch.zeros_like(total))


class StabilityScorer:
    """Scores `(latents, inputs, reconstruction)` batches of whole windows, each `[b, t, ...]`, as they arrive.

    The first `cfg.calibration_windows` windows are held back until their firing rates fix the dense set, then
    scored like every later batch; nothing else is kept. `matryoshka_split` (see smoothness.matryoshka_split)
    adds the smoothness of the high-level and low-level parts. `add`'s `raw_units` (smoothness.RawUnits; None for
    1) multiplies the latents into raw units for the smoothness.
    """

    def __init__(
        self, d_sae: int, cfg: TemporalStabilityConfig, seed: int, matryoshka_split: int | None = None
    ) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same shuffles on every device
        self.real = StabilityStatistics(d_sae, cfg.max_lag, cfg.min_firings)
        self.shuffled = StabilityStatistics(d_sae, cfg.max_lag, cfg.min_firings)
        self.reconstruction = ReconstructionStatistics()
        parts = smoothness_parts(d_sae, matryoshka_split)
        self.smoothness = LipschitzSmoothness(parts)
        self.smoothness_shuffled = LipschitzSmoothness(parts)
        self.firing_counts: torch.Tensor | None = None
        self.held: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.held_windows = 0
        self.included: torch.Tensor | None = None
        self.n_position_excluded = 0
        self.windows = 0
        self.random_sae: RandomTopK | None = None
        self.random_real = StabilityStatistics(d_sae, cfg.max_lag, cfg.min_firings)
        self.random_shuffled = StabilityStatistics(d_sae, cfg.max_lag, cfg.min_firings)
        self.random_smoothness = LipschitzSmoothness(smoothness_parts(d_sae, None))
        self.random_included: torch.Tensor | None = None
        self.seed = seed

    def add(
        self,
        latents: torch.Tensor,
        inputs: torch.Tensor,
        reconstruction: torch.Tensor,
        raw_units: torch.Tensor | None = None,
    ) -> None:
        units = torch.ones((), device=latents.device) if raw_units is None else raw_units.to(latents.device)
        self.windows += latents.shape[0]
        firings = (latents > self.cfg.activation_threshold).sum(1, dtype=torch.int32)  # [b, d_sae] per window
        counts = firings.sum(0, dtype=torch.int64)
        self.firing_counts = counts if self.firing_counts is None else self.firing_counts + counts
        if self.included is not None:
            self._score(latents, inputs, reconstruction, units, firings)
            return
        self.held.append((latents, inputs, reconstruction, units, firings))
        self.held_windows += latents.shape[0]
        if self.held_windows >= self.cfg.calibration_windows:
            self._calibrate()

    def _calibrate(self) -> None:
        assert self.firing_counts is not None
        tokens = sum(batch[0].shape[0] * batch[0].shape[1] for batch in self.held)
        latents = torch.cat([batch[0] for batch in self.held])
        inputs = torch.cat([batch[1] for batch in self.held])
        not_dense = _not_dense(self.firing_counts, tokens, self.cfg.dense_threshold)
        tracks_position = position_explained_variance(latents) > self.cfg.position_threshold
        self.n_position_excluded = int((tracks_position & not_dense).sum())
        self.included = not_dense & ~tracks_position
        l0 = float((latents > self.cfg.activation_threshold).sum(-1).double().mean())
        self.random_sae = RandomTopK(inputs, latents.shape[-1], k=max(1, round(l0)), seed=self.seed)
        random_inputs = inputs[: self.cfg.random_sae_windows]
        random_latents = self.random_sae.encode(random_inputs)
        random_counts = (random_latents > 0).sum((0, 1))
        random_tokens = random_latents.shape[0] * random_latents.shape[1]
        self.random_included = _not_dense(random_counts, random_tokens, self.cfg.dense_threshold)
        self._score_random_sae(random_latents, random_inputs)
        for batch in self.held:
            self._score(*batch)
        self.held.clear()

    def _score(
        self,
        latents: torch.Tensor,
        inputs: torch.Tensor,
        reconstruction: torch.Tensor,
        units: torch.Tensor,
        firings: torch.Tensor,
    ) -> None:
        assert self.included is not None
        threshold = self.cfg.activation_threshold
        positions = self.real.add(latents, inputs, threshold, self.included, firings)
        self.smoothness.add(latents, inputs, units)
        per_token = units.dim() == 3
        order = shuffle_order(self.generator, latents.shape[0], latents.shape[1], latents.device)
        shuffled = gather_positions(order, latents, inputs, *([units] if per_token else []))
        self.shuffled.add(shuffled[0], None, threshold, self.included, shuffled_from=(positions, order))
        self.smoothness_shuffled.add(shuffled[0], shuffled[1], shuffled[2] if per_token else units)
        self.reconstruction.add(latents, inputs, reconstruction, threshold)

    def _score_random_sae(self, random_latents: torch.Tensor, inputs: torch.Tensor) -> None:
        """The random-SAE baseline is scored on the first `random_sae_windows` calibration windows only: a fixed
        cost whatever the run's length; about 2k tokens estimate its scores well. It reads raw inputs with a unit-norm
        dictionary: its latents are in raw units."""
        assert self.random_sae is not None and self.random_included is not None
        positions = self.random_real.add(random_latents, None, 0.0, self.random_included)
        order = shuffle_order(self.generator, random_latents.shape[0], random_latents.shape[1], random_latents.device)
        (shuffled_random,) = gather_positions(order, random_latents)
        self.random_shuffled.add(shuffled_random, None, 0.0, self.random_included, shuffled_from=(positions, order))
        self.random_smoothness.add(random_latents, inputs, torch.ones((), device=inputs.device))

    def finish(self) -> TemporalStabilityResult:
        if self.windows == 0:
            raise ValueError("temporal_stability received no windows")
        if self.included is None:  # fewer windows than the calibration asked for: calibrate on all of them
            self._calibrate()
        assert self.included is not None and self.firing_counts is not None
        assert self.random_sae is not None
        smoothness = SmoothnessMetrics(
            lipschitz=self.smoothness.mean("all"),
            lipschitz_shuffled=self.smoothness_shuffled.mean("all"),
            lipschitz_high_level=self.smoothness.part_mean("high_level"),
            lipschitz_high_level_shuffled=self.smoothness_shuffled.part_mean("high_level"),
            lipschitz_low_level=self.smoothness.part_mean("low_level"),
            lipschitz_low_level_shuffled=self.smoothness_shuffled.part_mean("low_level"),
            identical_input_pairs=self.smoothness.n_identical_pairs,
        )
        result = _result(
            self.real,
            self.shuffled,
            self.reconstruction,
            smoothness,
            self.firing_counts,
            self.included,
            self.windows,
            self.cfg,
        )
        result.metrics.exclusions.n_position_excluded = self.n_position_excluded
        result.metrics.exclusions.n_dense_excluded -= self.n_position_excluded
        random_lag1 = _mean(self.random_real.autocorrelation.per_latent()[0])
        result.metrics.random_sae = RandomSAEMetrics(
            k=self.random_sae.k,
            adjacent_jaccard=self.random_real.jaccard.mean,
            adjacent_jaccard_excess=excess_over_null(self.random_real.jaccard.mean, self.random_shuffled.jaccard.mean),
            successive_cosine=self.random_real.cosine.mean,
            lag1_mean=random_lag1,
            lag1_excess=excess_over_null(random_lag1, _mean(self.random_shuffled.autocorrelation.per_latent()[0])),
            lipschitz=self.random_smoothness.mean("all"),
        )
        return result


def score_stability(
    batches: Iterable[tuple[torch.Tensor, ...]],
    d_sae: int,
    cfg: TemporalStabilityConfig,
    seed: int,
    matryoshka_split: int | None = None,
) -> TemporalStabilityResult:
    """Score every batch `(latents, inputs, reconstruction[, raw_units])` of an iterable in one pass (see
    StabilityScorer)."""
    scorer = StabilityScorer(d_sae, cfg, seed, matryoshka_split)
    for batch in batches:
        scorer.add(*batch)
    return scorer.finish()


def _not_dense(firing_counts: torch.Tensor, tokens: int, dense_threshold: float) -> torch.Tensor:
    return firing_counts.double() / tokens <= dense_threshold


def _result(
    real: StabilityStatistics,
    shuffled: StabilityStatistics,
    reconstruction_stats: ReconstructionStatistics,
    smoothness: SmoothnessMetrics,
    firing_counts: torch.Tensor,
    included: torch.Tensor,
    windows: int,
    cfg: TemporalStabilityConfig,
) -> TemporalStabilityResult:
    tokens = reconstruction_stats.tokens
    alive_included = int(((firing_counts > 0) & included).sum())
    real_curve = real.autocorrelation.per_latent()
    null_curve = shuffled.autocorrelation.per_latent()
    lags = []
    for k in range(cfg.max_lag):
        mean = _mean(real_curve[k])
        null = _mean(null_curve[k])
        lags.append(
            LagRow(
                lag=k + 1,
                mean=mean,
                median=float(real_curve[k].median()) if real_curve.shape[1] else float("nan"),
                shuffled_mean=null,
                excess=excess_over_null(mean, null),
                n_latents_measured=real.autocorrelation.n_measured,
            )
        )
    n_measured = real.autocorrelation.n_measured
    metrics = TemporalStabilityMetrics(
        jaccard=JaccardMetrics(
            adjacent_jaccard=real.jaccard.mean,
            adjacent_jaccard_shuffled=shuffled.jaccard.mean,
            adjacent_jaccard_excess=excess_over_null(real.jaccard.mean, shuffled.jaccard.mean),
            weighted_jaccard=real.weighted_jaccard.mean,
            weighted_jaccard_shuffled=shuffled.weighted_jaccard.mean,
            weighted_jaccard_excess=excess_over_null(real.weighted_jaccard.mean, shuffled.weighted_jaccard.mean),
        ),
        smoothness=smoothness,
        cosine=CosineMetrics(
            successive_cosine=real.cosine.mean,
            successive_cosine_shuffled=shuffled.cosine.mean,
            successive_cosine_excess=excess_over_null(real.cosine.mean, shuffled.cosine.mean),
            input_successive_cosine=real.input_cosine.mean,
            ratio_to_input=real.cosine.mean / real.input_cosine.mean if real.input_cosine.mean else float("nan"),
        ),
        autocorrelation=AutocorrelationMetrics(
            lag1_mean=lags[0].mean,
            lag1_median=lags[0].median,
            lag1_shuffled_mean=lags[0].shuffled_mean,
            lag1_excess=lags[0].excess,
            n_latents_measured=n_measured,
            coverage=n_measured / alive_included if alive_included else float("nan"),
        ),
        exclusions=ExclusionMetrics(
            n_latents=int(firing_counts.numel()),
            n_dense_excluded=int((~included).sum()),
            n_dense_over_run=int((firing_counts.double() / max(tokens, 1) > cfg.dense_threshold).sum()),
            n_dead=int((firing_counts == 0).sum()),
        ),
        reference=ReferenceMetrics(
            l0=reconstruction_stats.mean_l0,
            explained_variance=reconstruction_stats.explained_variance,
            tokens_evaluated=tokens,
            windows_evaluated=windows,
        ),
    )
    return TemporalStabilityResult(metrics=metrics, lags=lags, dense_latents=(~included).nonzero().squeeze(1).tolist())


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")
