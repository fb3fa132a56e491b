"""The hierarchy eval against values derived by hand: binary MI, the decoder grouping, k-means on planted clusters,
streamed fidelity; and through the runner, unavailable on other SAEs and run on a tiny hierarchical one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from sae_lens.saes.sae import SAEMetadata

from custom_saes.hierarchical import ARCHITECTURE, HierarchicalSAE, HierarchicalSAEConfig, explained_variance
from tests import helpers
from tsae_evals.errors import Unavailable
from tsae_evals.evals.hierarchy.analysis import (
    binary_entropy,
    binary_mutual_information,
    decoder_grouping,
    jaccard,
    kmeans,
    normalised_mutual_information,
    within_group_mean,
)
from tsae_evals.evals.hierarchy.config import HierarchyConfig
from tsae_evals.evals.hierarchy.stream import HierarchyStatistics, analyse


def _counts(a: list[int], b: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Co-firing and firing counts of two binary sequences, as the streamed statistics hold them."""
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return (x @ y).reshape(1, 1), x.sum().reshape(1), y.sum().reshape(1), len(a)


def test_mi_of_identical_firing_is_the_entropy_by_hand():
    firing = [1, 1, 1, 0, 0, 0, 0, 0]  # p = 3/8
    entropy = -(3 / 8) * math.log2(3 / 8) - (5 / 8) * math.log2(5 / 8)
    joint, a, b, n = _counts(firing, firing)
    assert binary_entropy(a, n).item() == pytest.approx(entropy, rel=1e-12)
    assert binary_mutual_information(joint, a, b, n).item() == pytest.approx(entropy, rel=1e-12)
    assert normalised_mutual_information(joint, a, b, n).item() == pytest.approx(1.0, rel=1e-12)


def test_mi_of_independent_firing_is_zero_and_of_a_noisy_copy_by_hand():
    joint, a, b, n = _counts([1, 1, 0, 0] * 3, [1, 0, 1, 0] * 3)  # every cell 1/4, margins 1/2: independent
    assert binary_mutual_information(joint, a, b, n).item() == pytest.approx(0.0, abs=1e-15)
    # n11 = 3, n10 = 1, n01 = 1, n00 = 3 of 8; margins 1/2: MI = 2 (3/8) log2(3/2) + 2 (1/8) log2(1/2)
    joint, a, b, n = _counts([1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 1, 0, 0, 0])
    expected = 0.75 * math.log2(1.5) - 0.25
    assert binary_mutual_information(joint, a, b, n).item() == pytest.approx(expected, rel=1e-12)
    # both entropies are 1 bit, so the NMI is the MI
    assert normalised_mutual_information(joint, a, b, n).item() == pytest.approx(expected, rel=1e-12)


def test_grouping_follows_the_largest_positive_upper_decoder_weight():
    upper_decoder = torch.tensor(
        [
            [0.9, 0.1, -0.2, 0.0, 0.3],
            [0.1, 0.8, 0.7, -0.1, 0.2],
            [0.0, 0.0, 0.9, 0.0, 0.4],
        ]
    )
    assert decoder_grouping(upper_decoder).tolist() == [0, 1, 2, -1, 2]
    # Without upper latent 2 (unmeasured), lower 2 goes to upper 1 and lower 4 to upper 0.
    allowed = torch.tensor([True, True, False])
    assert decoder_grouping(upper_decoder, allowed).tolist() == [0, 1, 1, -1, 0]


def test_kmeans_recovers_planted_clusters():
    generator = torch.Generator().manual_seed(0)
    centers = torch.eye(6)[:3] * 3
    truth = torch.arange(3).repeat_interleave(10)
    points = centers[truth] + 0.1 * torch.randn(30, 6, generator=generator)
    points = points[torch.randperm(30, generator=generator)]
    truth = points[:, :3].argmax(1)  # the cluster each point was drawn around
    labels = kmeans(points, 3, torch.Generator().manual_seed(1), restarts=2)
    same_truth, same_found = truth[:, None] == truth[None, :], labels[:, None] == labels[None, :]
    assert torch.equal(same_truth, same_found)


def test_within_group_quality_and_jaccard_by_hand():
    similarity = torch.tensor([[1.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 1.0]])
    assert within_group_mean(similarity, torch.tensor([0, 0, 1])) == pytest.approx(0.5)
    assert within_group_mean(similarity, torch.tensor([0, 0, 0])) == pytest.approx(0.3)
    assert math.isnan(within_group_mean(similarity, torch.tensor([0, 1, 2])))
    # fired 4 and 2 times, together once: 1 / (4 + 2 - 1)
    jac = jaccard(torch.tensor([[4.0, 1.0], [1.0, 2.0]]), torch.tensor([4.0, 2.0]))
    assert jac[0, 1].item() == pytest.approx(1 / 5) and jac[0, 0].item() == 1.0


def test_streamed_statistics_match_direct_computation_and_a_planted_hierarchy_scores_above_its_nulls():
    # Lower latents 0-2 fire together when the "parent" fires, 3-5 when the other does; upper 0 and 1 are those
    # parents exactly, and their decoder rows write their children. Tokens: two batches.
    generator = torch.Generator().manual_seed(0)
    n_tokens, d_lower, d_upper = 400, 6, 2
    parent = torch.randint(0, 3, (n_tokens,), generator=generator)  # 0: none, 1: first family, 2: second
    upper = torch.stack([parent == 1, parent == 2], 1).float()
    lower = torch.cat([upper[:, :1].repeat(1, 3), upper[:, 1:].repeat(1, 3)], 1)
    lower = lower * (torch.rand(n_tokens, d_lower, generator=generator) < 0.9)  # children drop out sometimes
    lower_hat = upper @ torch.tensor([[1.0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]])
    x = torch.randn(n_tokens, 4, generator=generator)
    x_hat = x + 0.3 * torch.randn(n_tokens, 4, generator=generator)
    stats = HierarchyStatistics(d_lower, d_upper, permutations=4, seed=0)
    for part in (slice(0, 150), slice(150, None)):
        stats.add(x[part], x_hat[part], lower[part], upper[part], lower_hat[part])
    assert stats.tokens == n_tokens
    again = HierarchyStatistics(d_lower, d_upper, permutations=4, seed=0)
    again.add(x, x_hat, lower, upper, lower_hat)
    assert not torch.equal(again.null_joint[0], again.null_joint[1])  # each permutation its own draw
    torch.testing.assert_close(stats.joint.double(), upper.double().T @ (lower > 0).double())
    cfg = HierarchyConfig(dense_threshold=1.0, random_partitions=10)
    upper_decoder = torch.tensor([[0.6, 0.5, 0.6, 0.0, 0.1, 0.0], [0.0, 0.1, 0.0, 0.6, 0.5, 0.6]])
    lower_decoder = torch.randn(d_lower, 4, generator=generator)
    result = analyse(stats, upper_decoder, lower_decoder, cfg, windows=10, seed=0)
    levels = result.metrics.levels
    assert levels.l0_lower == pytest.approx(float((lower > 0).sum()) / n_tokens)
    assert levels.l0_upper == pytest.approx(float(upper.sum()) / n_tokens)
    assert levels.explained_variance_lower == pytest.approx(explained_variance(x.double(), x_hat.double()), rel=1e-9)
    assert levels.explained_variance_upper == pytest.approx(explained_variance(lower.double(), lower_hat), rel=1e-9)
    mutual = result.metrics.mutual_information
    assert mutual.max_nmi > 0.5 > 0.05 > mutual.max_nmi_null
    assert mutual.share_above_null == 1.0
    assert mutual.mean_nmi > mutual.mean_nmi_null
    grouping = result.metrics.grouping
    assert (grouping.n_groups, grouping.n_lower_grouped) == (2, 6) and result.group_sizes == [3, 3]
    assert grouping.upper_jaccard > 0.5 > grouping.random_jaccard
    assert [row.n_children for row in result.top_latents] == [3, 3]


def _tiny_hierarchical(path: Path, seed: int = 0) -> Path:
    metadata = SAEMetadata(
        hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME, context_size=32, prepend_bos=True
    )
    sae = HierarchicalSAE(HierarchicalSAEConfig(d_in=helpers.D_MODEL, d_sae=48, d_lower=32, metadata=metadata))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in (sae.W_dec_lower, sae.W_dec_upper):
            rows = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(rows / rows.norm(dim=-1, keepdim=True))
        sae.W_enc_lower.copy_(sae.W_dec_lower.T)
        sae.W_enc_upper.copy_(sae.W_dec_upper.T)
        sae.b_enc_lower.fill_(-0.3)
        sae.b_enc_upper.fill_(-0.2)
    return helpers.save_sae(sae.eval(), path)


def only_our_analysis_evals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Narrow the "analysis" group to hierarchy and lifecycle: its other members (and their window needs) are
    tested in their own files; the group path through the runner is what this test exercises."""
    from tsae_evals import registry

    real = registry.groups()
    assert {"hierarchy", "lifecycle"} <= set(real["analysis"])
    monkeypatch.setattr(registry, "groups", lambda: {**real, "analysis": ["hierarchy", "lifecycle"]})


def test_hierarchy_is_unavailable_on_other_saes_through_the_group_and_runs_on_a_hierarchical_one(
    tiny_model, sae_dir, corpus_file, tmp_path, device, monkeypatch
):
    from tsae_evals.runner import RunRequest, run

    only_our_analysis_evals(monkeypatch)
    from tsae_evals.evals.hierarchy.eval import ARCHITECTURE as SPELLED_IN_THE_EVAL

    assert SPELLED_IN_THE_EVAL == ARCHITECTURE
    hierarchical = _tiny_hierarchical(tmp_path / "tiny_hierarchical")

    def request(saes: list[Path], evals: str) -> RunRequest:
        return RunRequest(
            device=device,
            sae_specs=[str(s) for s in saes],
            eval_names=evals,
            dataset=str(corpus_file),
            n_windows=8,
            context_size=32,
            batch_size=4,
            results_dir=tmp_path / "results",
            allow_degenerate=True,
            # A random SAE on a random model fires densely; count latents up to half the tokens so both levels
            # have measured latents and the groupings have pairs.
            config_overrides=["hierarchy.dense_threshold=0.5"],
        )

    outcomes = run(request([sae_dir, hierarchical], "analysis"), model_loader=lambda *_: tiny_model)
    status = {(o.sae_label, o.eval_name): o for o in outcomes}
    standard = status[_label(status, sae_dir), "hierarchy"]
    assert standard.status == "unavailable" and ARCHITECTURE in standard.message
    ours = status[_label(status, hierarchical), "hierarchy"]
    assert ours.status == "ok", ours.message
    record = json.loads(ours.path.read_text())
    metrics = record["eval_result_metrics"]
    assert metrics["reference"]["tokens_evaluated"] == 8 * 31
    assert metrics["exclusions"]["d_lower"] == 32 and metrics["exclusions"]["d_upper"] == 16
    assert metrics["levels"]["l0_lower"] > 0 and metrics["levels"]["l0_upper"] > 0
    for value in (*metrics["mutual_information"].values(), *metrics["grouping"].values()):
        assert math.isfinite(value)
    assert record["eval_result_details"] and record["eval_result_unstructured"]["group_sizes"]
    with pytest.raises(Unavailable):  # named explicitly, the refusal is an error
        run(request([sae_dir], "hierarchy"), model_loader=lambda *_: tiny_model)


def _label(status: dict, path: Path) -> str:
    labels = {label for label, _ in status}
    return next(label for label in labels if path.name in label)
