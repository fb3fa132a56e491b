"""Result of the hierarchy eval: levels, mutual information and groupings as SAE-Bench metric categories, the most
frequent upper latents as details."""

from __future__ import annotations

from typing import Any

from tsae_evals.evals.streaming import ReferenceMetrics
from tsae_evals.results import EvalResult, MetricCategory, metric

DEFINITIONS = (
    "Tokens: the scored positions of each window (BOS and skipped positions cut). A latent is measured when it "
    "fired on at least `min_firings` tokens and is not dense. MI: plug-in mutual information (bits) of the binary "
    "firing of an upper and a lower latent; NMI = MI / sqrt(H(upper) H(lower)) (1 when they fire on the same "
    "tokens). Null: the upper codes permuted across the tokens of each batch (each latent's count kept, the pairing "
    "with the lower level destroyed), `null_permutations` times; the plug-in bias and the max over lower latents "
    "inflate the null alike. f2 is a function of f1, so any upper level, trained or not, clears this null: it "
    "gives the estimator's floor, and max_nmi is read against other SAEs (an untrained upper level among them). "
    "Grouping: each measured lower latent goes to the measured upper latent with the "
    "largest (positive) weight onto it in W_dec_upper; lower latents no measured upper latent writes positively "
    "are left out of all three groupings. k-means: seeded k-means++ / Lloyd on the unit lower decoder rows, k = "
    "groups the upper level makes. Random: the upper level's labels permuted (same group sizes). Quality: mean "
    "over within-group pairs of the firing Jaccard and of the decoder cosine. k-means groups by decoder geometry "
    "directly, so it is the reference on cosine; the upper level learned from co-firing, which the Jaccard reads."
)


class LevelMetrics(MetricCategory):
    l0_lower: float = metric(label="l0_lower", higher_is_better=None)
    """Mean active lower latents per token."""
    l0_upper: float = metric(label="l0_upper", higher_is_better=None)
    """Mean active upper latents per token."""
    explained_variance_lower: float = metric(label="ev_lower", higher_is_better=True, headline=True)
    """Explained variance of x by the lower level's reconstruction (the SAE's output)."""
    explained_variance_upper: float = metric(label="ev_upper", higher_is_better=True, headline=True)
    """Explained variance of the lower code by the upper level's reconstruction of it."""
    alive_lower: float = metric(label="alive_lower", higher_is_better=True)
    """Share of lower latents that fired on the tokens read."""
    alive_upper: float = metric(label="alive_upper", higher_is_better=True)
    """Share of upper latents that fired on the tokens read."""


class MutualInformationMetrics(MetricCategory):
    max_nmi: float = metric(label="max_nmi", higher_is_better=True, headline=True)
    """Mean over measured upper latents of their largest NMI with a measured lower latent."""
    max_nmi_null: float = metric(label="max_nmi_null", higher_is_better=None, headline=True)
    """The same with the upper codes permuted across tokens (mean over permutations)."""
    max_nmi_null_sd: float = metric(label="max_nmi_null_sd", higher_is_better=None)
    """Standard deviation of max_nmi_null over permutations."""
    share_above_null: float = metric(label="above_null", higher_is_better=True)
    """Share of measured upper latents whose largest NMI exceeds their largest NMI under every permutation."""
    mean_nmi: float = metric(label="mean_nmi", higher_is_better=None)
    """Mean NMI over all pairs of measured upper and lower latents."""
    mean_nmi_null: float = metric(label="mean_nmi_null", higher_is_better=None)
    """The same under the permutation null (mean over permutations)."""
    mean_nmi_null_sd: float = metric(label="mean_nmi_null_sd", higher_is_better=None)
    """Standard deviation of mean_nmi_null over permutations."""


class GroupingMetrics(MetricCategory):
    upper_jaccard: float = metric(label="group_jaccard", higher_is_better=True, headline=True)
    """Mean firing Jaccard of lower-latent pairs the upper level groups together."""
    kmeans_jaccard: float = metric(label="kmeans_jaccard", higher_is_better=None, headline=True)
    """The same for k-means groups of the lower decoder directions."""
    random_jaccard: float = metric(label="random_jaccard", higher_is_better=None, headline=True)
    """The same for random groups of the upper level's sizes (mean over partitions)."""
    random_jaccard_sd: float = metric(label="random_jaccard_sd", higher_is_better=None)
    """Standard deviation of random_jaccard over partitions."""
    upper_cosine: float = metric(label="group_cosine", higher_is_better=True)
    """Mean decoder cosine of lower-latent pairs the upper level groups together."""
    kmeans_cosine: float = metric(label="kmeans_cosine", higher_is_better=None)
    """The same for k-means groups."""
    random_cosine: float = metric(label="random_cosine", higher_is_better=None)
    """The same for random groups (mean over partitions)."""
    random_cosine_sd: float = metric(label="random_cosine_sd", higher_is_better=None)
    """Standard deviation of random_cosine over partitions."""
    n_groups: int = metric(label="groups", higher_is_better=None)
    """Upper latents that own at least one grouped lower latent (k of k-means)."""
    n_lower_grouped: int = metric(label="lower_grouped", higher_is_better=None)
    """Measured lower latents some measured upper latent writes positively (the latents grouped)."""
    largest_group_share: float = metric(label="largest_group", higher_is_better=None)
    """Share of the grouped lower latents in the upper level's largest group."""


class HierarchyExclusions(MetricCategory):
    d_lower: int = metric(label="d_lower", higher_is_better=None)
    """Lower-level width."""
    d_upper: int = metric(label="d_upper", higher_is_better=None)
    """Upper-level width."""
    n_lower_measured: int = metric(label="lower_measured", higher_is_better=None)
    """Lower latents with at least `min_firings` firings, not dense."""
    n_upper_measured: int = metric(label="upper_measured", higher_is_better=None)
    """Upper latents with at least `min_firings` firings, not dense."""
    n_dense_excluded: int = metric(label="dense_excluded", higher_is_better=None)
    """Latents of either level above `dense_threshold`."""


class HierarchyMetrics(MetricCategory):
    levels: LevelMetrics
    """Sparsity and fidelity of each level."""
    mutual_information: MutualInformationMetrics
    """How much an upper latent's firing tells about lower latents', against chance."""
    grouping: GroupingMetrics
    """The upper level's grouping of lower latents against k-means and random groupings."""
    exclusions: HierarchyExclusions
    """What was measured and why."""
    reference: ReferenceMetrics
    """Sparsity of the same tokens (both levels)."""


class UpperLatent(MetricCategory):
    upper: int
    """Index within the upper level (its SAE latent is d_lower + upper)."""
    firing_rate: float
    """Share of tokens where it fires."""
    best_lower: int
    """The measured lower latent of largest NMI with it."""
    max_nmi: float
    """That NMI."""
    max_nmi_null: float
    """Its largest NMI under the permutation null (mean over permutations)."""
    n_children: int
    """Grouped lower latents it owns (largest decoder weight onto them)."""


class HierarchyResult(EvalResult):
    """What `hierarchy` returns."""

    metrics: HierarchyMetrics
    """SAE-Bench metric categories."""
    top_latents: list[UpperLatent]
    """The most frequently firing measured upper latents."""
    group_sizes: list[int]
    """Sizes of the upper level's groups, largest first."""

    def details_list(self) -> list[Any]:
        return [row.model_dump() for row in self.top_latents]

    def unstructured(self) -> dict[str, Any]:
        return {"group_sizes": self.group_sizes, "definitions": DEFINITIONS}
