"""SAE-Bench's sparse probe recipe on probe items, with its baselines, bootstrap intervals and the carry curve.

Recipe (sae_bench/evals/sparse_probing/probe_training.py, called as is inside `contained`): rank features by
|mean(x | y=1) - mean(x | y=0)| on the train items (`get_top_k_mean_diff_mask`), keep the top k
(`apply_topk_mask_reduce_dim`), fit L2 logistic regression with C=1 and max_iter=1000 (`train_sklearn_probe`).
Accuracy is measured on the test items with a seeded percentile bootstrap over them. Baselines at the same
readout: the full residual probe (ceiling), the top k residual dimensions at the same k (the bar SAE latents must
beat), a random SAE of the evaluated SAE's width and L0, and the majority class of the train items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE

    from tsae_evals.probing.encode import EncodedItems

K_VALUES = (1, 2, 5, 10, 20)
"""Latents (or residual dimensions) a sparse probe keeps."""
N_RESAMPLES = 1000
"""Bootstrap resamples of the test items."""
CONFIDENCE = 0.95
"""Coverage of the bootstrap percentile intervals."""


@dataclass(frozen=True)
class Accuracy:
    """A test accuracy with its bootstrap percentile interval over the test items (NaN when not measurable)."""

    value: float
    """Fraction of test items predicted right."""
    ci_low: float
    """Lower end of the interval."""
    ci_high: float
    """Upper end of the interval."""
    n: int
    """Test items."""

    @classmethod
    def nan(cls, n: int = 0) -> Accuracy:
        return cls(float("nan"), float("nan"), float("nan"), n)


def bootstrap_accuracy(
    correct: torch.Tensor, *, seed: int, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE
) -> Accuracy:
    """Mean of the boolean `correct [n]` and its percentile interval over `n_resamples` resamples of the items."""
    import torch

    n = int(correct.numel())
    if n == 0:
        return Accuracy.nan()
    values = correct.double().cpu()
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(n, (n_resamples, n), generator=generator)
    stats = values[index].mean(1)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(stats, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return Accuracy(float(values.mean()), low, high, n)


def gather(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`values [n, L, F]` read at `positions [n]` -> `[n, F]`, or at `positions [n, P]` -> `[n, P, F]`. Negative
    positions (an item without that mark) read position 0: mask those items out."""
    import torch

    index = positions.clamp_min(0).to(values.device)
    rows = torch.arange(values.shape[0], device=values.device)
    if index.dim() == 1:
        return values[rows, index]
    return values[rows[:, None], index]


def offset_index(positions: torch.Tensor, lengths: torch.Tensor, max_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(index [n, max_offset + 1], valid [n, max_offset + 1])`: positions + 0..max_offset, and whether each lies
    inside the item (at or after a real mark, before its length)."""
    import torch

    index = positions[:, None] + torch.arange(max_offset + 1)[None, :]
    valid = (positions[:, None] >= 0) & (index < lengths[:, None])
    return torch.where(valid, index, torch.zeros_like(index)), valid


# --- the SAE's latents and the random SAE ----------------------------------------------------------------------


@dataclass(frozen=True)
class SaeCodes:
    """An SAE's latents at chosen positions of every item, and its L0 over the items' text tokens."""

    latents: torch.Tensor
    """`[n, P, d_sae]` latents at `index` (float32, CPU)."""
    l0: float
    """Mean active latents per text token (BOS and padding excluded) over all the items."""


def text_mask(lengths: torch.Tensor, width: int, first_text_position: int) -> torch.Tensor:
    """`[n, width]` True at the items' text positions (after BOS, before the padding)."""
    import torch

    position = torch.arange(width)[None, :]
    return (position >= first_text_position) & (position < lengths[:, None])


def encode_at(
    sae: SAE[Any],
    activations: torch.Tensor,
    lengths: torch.Tensor,
    index: torch.Tensor,
    *,
    first_text_position: int,
    batch_size: int = 64,
) -> SaeCodes:
    """Encode whole item rows `activations [n, L, d_in]` (a sequence-aware SAE sees the row as context) and keep
    the latents at `index [n, P]`; only those are held, never the dense `[n, L, d_sae]`."""
    import torch

    device = next(sae.parameters()).device
    kept, active, tokens = [], 0.0, 0
    mask = text_mask(lengths, activations.shape[1], first_text_position)
    with torch.no_grad():
        for start in range(0, activations.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            latents = sae.encode(activations[rows].to(device)).float()
            kept.append(gather(latents, index[rows]).cpu())
            batch_mask = mask[rows].to(latents.device)
            active += float(((latents > 0).sum(-1) * batch_mask).sum())
            tokens += int(batch_mask.sum())
    d_sae = int(sae.cfg.d_sae)
    latents = torch.cat(kept) if kept else torch.zeros(0, index.shape[1], d_sae)
    return SaeCodes(latents, active / tokens if tokens else 0.0)


def random_sae_codes(
    activations: torch.Tensor,
    lengths: torch.Tensor,
    index: torch.Tensor,
    *,
    d_sae: int,
    l0: float,
    first_text_position: int,
    seed: int,
) -> torch.Tensor:
    """`[n, P, d_sae]` latents at `index` of the random-SAE baseline: a unit-norm random dictionary of the
    evaluated SAE's width, encoder = its transpose, TopK at its L0 (rounded, at least 1), centred on the items'
    mean text activation (temporal_stability's `RandomTopK`, the same as custom_saes' `random` baseline SAE)."""
    from tsae_evals.evals.random_sae import RandomTopK

    text = activations[text_mask(lengths, activations.shape[1], first_text_position)]
    random_sae = RandomTopK(text, d_sae, k=max(1, round(l0)), seed=seed)
    return random_sae.encode(gather(activations, index).float())


# --- probes ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearProbe:
    """A fitted probe: the features it reads and its logistic regression."""

    features: list[int]
    """Feature indices read, ascending (the columns of the regression)."""
    model: Any
    """sklearn `LogisticRegression` on those features (None when the train items had one label only)."""
    constant: int = 0
    """The label predicted when `model` is None."""
    ranked: list[int] = field(default_factory=list)
    """The same features by |mean difference| on the train items, largest first."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """`[n]` predicted labels for `x [n, F]` (all features; the probe picks its own)."""
        import torch

        if self.model is None or x.shape[0] == 0:
            return torch.full((x.shape[0],), self.constant, dtype=torch.long)
        picked = x[:, self.features].float().cpu().numpy()
        return torch.as_tensor(self.model.predict(picked), dtype=torch.long)

    def accuracy(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        seed: int,
        n_resamples: int = N_RESAMPLES,
        confidence: float = CONFIDENCE,
    ) -> Accuracy:
        if self.model is None:
            return Accuracy.nan(int(y.numel()))
        correct = self.predict(x) == y.cpu()
        return bootstrap_accuracy(correct, seed=seed, n_resamples=n_resamples, confidence=confidence)


def mean_difference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`[F]` |mean(x | y=1) - mean(x | y=0)|: SAE-Bench's ranking score."""
    return (x[y == 1].float().mean(0) - x[y == 0].float().mean(0)).abs()


def fit_probe(x_train: torch.Tensor, y_train: torch.Tensor, k: int | None) -> LinearProbe:
    """SAE-Bench's recipe on `x_train [n, F]`: the top `k` features by mean difference (None: all of them, the
    full probe), then L2 logistic regression (C=1, max_iter=1000). Call inside `contained` (see `probing_context`)."""
    import torch
    from sae_bench.evals.sparse_probing.probe_training import (
        apply_topk_mask_reduce_dim,
        get_top_k_mean_diff_mask,
        train_sklearn_probe,
    )

    y = y_train.long().cpu()
    x = x_train.float().cpu()
    if x.shape[0] == 0 or y.unique().numel() < 2:
        return LinearProbe([], None, int(y[0]) if y.numel() else 0)
    if k is None or k >= x.shape[1]:
        features, kept = list(range(x.shape[1])), x
    else:
        mask = get_top_k_mean_diff_mask(x, y, k)  # True = left out
        features = [int(i) for i in torch.nonzero(~mask).flatten()]  # the order reduce_dim keeps them in
        kept = apply_topk_mask_reduce_dim(x, mask)
    # SAE-Bench's trainer also scores a test set; the train set stands in (test accuracy is ours, bootstrapped).
    model, _ = train_sklearn_probe(kept, y, kept, y)
    score = mean_difference(x, y)[features]
    ranked = [features[int(i)] for i in torch.argsort(score, descending=True, stable=True)]
    return LinearProbe(features, model, ranked=ranked)


def probing_context() -> Any:
    """The context SAE-Bench's probe functions run in (jaxtyping checks off, RNG and prints contained)."""
    from tsae_evals.evals.saebench.adapter import contained

    return contained("probe training")


def majority_accuracy(
    y_train: torch.Tensor,
    y_test: torch.Tensor,
    *,
    seed: int,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Accuracy:
    """Accuracy of always predicting the train items' most frequent label (ties: label 0)."""
    if y_train.numel() == 0:
        return Accuracy.nan(int(y_test.numel()))
    majority = int(y_train.long().sum() * 2 > y_train.numel())
    return bootstrap_accuracy(y_test.cpu() == majority, seed=seed, n_resamples=n_resamples, confidence=confidence)


@dataclass(frozen=True)
class ReadoutScores:
    """Test accuracies of every probe at one readout position."""

    sae: dict[int, Accuracy]
    """k -> the top-k SAE latent probe."""
    residual_top_k: dict[int, Accuracy]
    """k -> the top-k residual dimension probe."""
    random_sae: dict[int, Accuracy]
    """k -> the top-k probe on the random SAE's latents."""
    full_residual: Accuracy
    """The probe on every residual dimension (the ceiling)."""
    majority: Accuracy
    """Always the train items' majority label."""
    n_train: int
    """Train items the probes were fitted on."""
    n_test: int
    """Test items they were scored on."""
    sae_probes: dict[int, LinearProbe] = field(default_factory=dict)
    """k -> the fitted SAE probe (its `features` are the top-k latents, for carry curves and causal checks)."""

    @classmethod
    def empty(cls, k_values: Sequence[int], n_train: int = 0, n_test: int = 0) -> ReadoutScores:
        nan = {k: Accuracy.nan(n_test) for k in k_values}
        return cls(dict(nan), dict(nan), dict(nan), Accuracy.nan(n_test), Accuracy.nan(n_test), n_train, n_test)


def score_readout(
    sae_x: torch.Tensor,
    residual_x: torch.Tensor,
    random_x: torch.Tensor | None,
    y: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    *,
    seed: int,
    k_values: Sequence[int] = K_VALUES,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> ReadoutScores:
    """Every probe at one readout: `sae_x [n, d_sae]`, `residual_x [n, d_in]`, `random_x [n, d_sae]` (None: no
    random-SAE baseline, NaN) for all items; fitted on the `train` mask, scored on the `test` mask. Every
    accuracy resamples the same test items (one seed), so their intervals are comparable. NaN throughout when
    the train items lack a label or there are no test items."""
    y = y.long().cpu()
    train, test = train.cpu(), test.cpu()
    n_train, n_test = int(train.sum()), int(test.sum())
    if n_test == 0 or y[train].unique().numel() < 2:
        return ReadoutScores.empty(k_values, n_train, n_test)

    def scored(x: torch.Tensor, k: int | None) -> tuple[LinearProbe, Accuracy]:
        probe = fit_probe(x[train], y[train], k)
        accuracy = probe.accuracy(x[test], y[test], seed=seed, n_resamples=n_resamples, confidence=confidence)
        return probe, accuracy

    sae_scores, residual_scores, random_scores, probes = {}, {}, {}, {}
    with probing_context():
        for k in k_values:
            probes[k], sae_scores[k] = scored(sae_x, k)
            residual_scores[k] = scored(residual_x, k)[1]
            random_scores[k] = Accuracy.nan(n_test) if random_x is None else scored(random_x, k)[1]
        full = scored(residual_x, None)[1]
    majority = majority_accuracy(y[train], y[test], seed=seed, n_resamples=n_resamples, confidence=confidence)
    return ReadoutScores(
        sae=sae_scores,
        residual_top_k=residual_scores,
        random_sae=random_scores,
        full_residual=full,
        majority=majority,
        n_train=n_train,
        n_test=n_test,
        sae_probes=probes,
    )


# --- carry curve -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CarryCurve:
    """A probe fitted at a mark and scored, with the same features and weights, 0..D tokens later."""

    accuracies: list[Accuracy]
    """Offset d -> test accuracy at mark + d (offset 0: where it was fitted); items end before some offsets."""
    chance: float
    """Majority-label rate of the test items at offset 0."""
    carry_tokens: int
    """Consecutive offsets from 1 at which the probe keeps at least `retained_fraction` of its above-chance
    accuracy at offset 0 (0 when it is not above chance there)."""
    features: list[int]
    """The features the probe reads, by |mean difference| at offset 0, largest first."""


def carry_curve(
    features: torch.Tensor,
    valid: torch.Tensor,
    y: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    *,
    k: int | None,
    seed: int,
    retained_fraction: float = 0.5,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> CarryCurve:
    """Fit the top-`k` probe (None: all features) at offset 0 of `features [n, D + 1, F]` on the train items,
    then score it at each offset on the test items that are still `valid [n, D + 1]` there. Build `features` with
    `offset_index` and `gather` (or `encode_at`)."""
    y, valid, train, test = y.long().cpu(), valid.cpu(), train.cpu(), test.cpu()
    fit_rows = train & valid[:, 0]
    with probing_context():
        probe = fit_probe(features[fit_rows, 0], y[fit_rows], k)
    accuracies = []
    for offset in range(features.shape[1]):
        rows = test & valid[:, offset]
        accuracies.append(
            probe.accuracy(features[rows, offset], y[rows], seed=seed, n_resamples=n_resamples, confidence=confidence)
        )
    at_fit = y[test & valid[:, 0]].double()
    chance = float(max(at_fit.mean(), 1 - at_fit.mean())) if at_fit.numel() else float("nan")
    margin = accuracies[0].value - chance
    carry = 0
    if margin > 0:
        for accuracy in accuracies[1:]:
            if not accuracy.value - chance >= retained_fraction * margin:  # NaN (no items left) ends it too
                break
            carry += 1
    return CarryCurve(accuracies, chance, carry, probe.ranked)


# --- every readout of one SAE at once ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readouts:
    """Probe scores at several marks for one SAE, and what they were computed from."""

    scores: dict[str, ReadoutScores]
    """Mark name -> every probe's test accuracies there."""
    latents: torch.Tensor
    """`[n, P, d_sae]` the SAE's latents at the marks, in `marks` order (rows of items without a mark read
    position 0: mask them with `encoded.positions[mark] >= 0`)."""
    residual: torch.Tensor
    """`[n, P, d_in]` the hook's activations at the marks."""
    random_latents: torch.Tensor
    """`[n, P, d_sae]` the random SAE's latents at the marks."""
    l0: float
    """The SAE's mean L0 over the items' text tokens (the random SAE's TopK)."""
    marks: list[str]
    """The marks, in the order of the middle axis above."""


def probe_readouts(
    sae: SAE[Any],
    activations: torch.Tensor,
    encoded: EncodedItems,
    marks: Sequence[str],
    use: torch.Tensor,
    *,
    seed: int,
    batch_size: int = 64,
    k_values: Sequence[int] = K_VALUES,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Readouts:
    """Every probe at each of `marks` (names in `encoded.positions`, `last` included) for the items of the mask
    `use [n]` (typically the ones the model gets right) that have that mark: fitted on their train split, scored
    on their test split; label = the items' label. One SAE encode of the items serves every mark."""
    import torch

    index = torch.stack([encoded.positions[mark] for mark in marks], 1)  # [n, P]
    first = 1 if encoded.prepend_bos else 0
    codes = encode_at(sae, activations, encoded.lengths, index, first_text_position=first, batch_size=batch_size)
    random_latents = random_sae_codes(
        activations,
        encoded.lengths,
        index,
        d_sae=int(sae.cfg.d_sae),
        l0=codes.l0,
        first_text_position=first,
        seed=seed,
    )
    residual = gather(activations, index).float()
    labels, train = encoded.labels, encoded.is_train
    scores = {}
    for slot, mark in enumerate(marks):
        rows = use.cpu() & (index[:, slot] >= 0)
        scores[mark] = score_readout(
            codes.latents[:, slot],
            residual[:, slot],
            random_latents[:, slot],
            labels,
            train & rows,
            ~train & rows,
            seed=seed,
            k_values=k_values,
            n_resamples=n_resamples,
            confidence=confidence,
        )
    return Readouts(scores, codes.latents, residual, random_latents, codes.l0, list(marks))
