"""causal_interventions: the edit, the persistence rule, and runs on the tiny model (per-token vs sequence-aware)."""

from __future__ import annotations

import json

import torch

from tsae_evals.evals.causal_interventions.config import CausalInterventionsConfig
from tsae_evals.evals.causal_interventions.eval import _edit, persistence
from tsae_evals.runner import RunRequest, run


def test_persistence_is_the_last_offset_above_the_fraction_of_the_peak():
    assert persistence([1.0, 0.5, 0.2, 0.05, 0.15, 0.0], 0.1) == 4
    assert persistence([0.0, 0.0], 0.1) == 0


def test_edit_sets_the_most_active_latents_over_the_span_only():
    latents = torch.zeros(1, 10, 6)
    latents[0, 3:5, 2] = 3.0
    latents[0, 3:5, 4] = 1.0
    latents[0, 3:5, 5] = 0.5
    latents[0, 8, 2] = 7.0
    ablated, chosen = _edit(latents, 3, 5, CausalInterventionsConfig(n_latents=2))
    assert sorted(chosen[0]) == [2, 4]
    assert ablated[0, 3:5, [2, 4]].abs().sum() == 0 and ablated[0, 3:5, 5].eq(0.5).all()
    assert ablated[0, 8, 2] == 7.0
    clamped, _ = _edit(latents, 3, 5, CausalInterventionsConfig(n_latents=1, mode="clamp", clamp_multiplier=2.0))
    assert clamped[0, 3:5, 2].eq(14.0).all()  # 2 x the latent's window maximum (7)


def _run(tiny_model, sae_dir, corpus_file, tmp_path, device):
    request = RunRequest(
        device=device,
        sae_specs=[str(sae_dir)],
        eval_names="causal_interventions",
        dataset=str(corpus_file),
        n_windows=8,
        context_size=48,
        batch_size=4,
        results_dir=tmp_path,
        allow_degenerate=True,
        config_overrides=[
            "causal_interventions.n_windows=8",
            "causal_interventions.start=8",
            "causal_interventions.max_offset=16",
        ],
    )
    outcome = run(request, model_loader=lambda *_: tiny_model)[0]
    assert outcome.status == "ok", outcome.message
    return json.loads(outcome.path.read_text())


def test_per_token_sae_edit_reaches_the_loss_but_never_later_latents(
    tiny_model, sae_dir, corpus_file, tmp_path, device
):
    record = _run(tiny_model, sae_dir, corpus_file, tmp_path, device)
    metrics = record["eval_result_metrics"]
    assert metrics["loss"]["mean_abs_delta_loss_in_span"] > 0
    # The tiny model has a layer after the hook: attention carries the edit to later positions.
    assert metrics["loss"]["mean_abs_delta_loss_after"] > 0
    assert metrics["latents"]["mean_abs_delta_latents_after"] == 0.0
    assert metrics["latents"]["persistence_tokens"] == 0
    assert len(record["eval_result_details"]) == 17


def test_sequence_aware_sae_carries_the_edit_into_later_latents(tiny_model, corpus_file, tmp_path, device):
    from tests.contract.test_architectures import build

    sae_dir = tmp_path / "context_sae"
    build("tsae_temporal_context").save_model(sae_dir)
    metrics = _run(tiny_model, sae_dir, corpus_file, tmp_path / "r", device)["eval_result_metrics"]
    # context window 4: the edit shows up in the latents of the next positions, then is forgotten
    assert metrics["latents"]["mean_abs_delta_latents_after"] > 0
    assert 1 <= metrics["latents"]["persistence_tokens"] <= 4
