"""Reference SAEs for the leaderboard, built from data instead of trained: a random SAE (same width, matched L0)
and a PCA/identity SAE. Both are saved as plain sae-lens classes (TopK, standard), so anyone can load them.

- random: unit-norm Gaussian decoder rows, encoder = decoder^T, TopK with k = the matched SAE's measured L0,
  b_dec = the mean activation. Separates "the activations are smooth" from "the dictionary is smooth".
- pca: principal directions C of the activations split into positive and negative parts,
  W_enc = [C^T, -C^T], W_dec = [C; -C], b_dec = mean, so latents are non-negative like every SAE's and
  decode(encode(x)) is the projection onto the top components: with all d_in components, exactly x (identity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from custom_saes.errors import InvalidOption
from custom_saes.training.registry import TrainingJob, register_training_architecture


class RandomOptions(BaseModel):
    """Settings of the random baseline (set with --set name=value)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    match: Path | None = None
    """SAE directory whose width and L0 (measured on the training windows) to match; else --expansion and --k."""


class PCAOptions(BaseModel):
    """Settings of the PCA reference (set with --set name=value)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    n_components: int | None = Field(default=None, ge=1)
    """Principal components kept (d_sae = 2 x this); None keeps all d_in: the identity reconstruction."""


SAMPLE_TOKENS = 400_000
"""Activations a data-built baseline reads at most (its mean, covariance or matched L0)."""


def _counted_activations(job: TrainingJob) -> torch.Tensor:
    return job.sequence_activations().sample(SAMPLE_TOKENS)


@register_training_architecture("random", options=RandomOptions)
def build_random(job: TrainingJob, options: RandomOptions) -> Any:
    """Random unit-norm dictionary with TopK at a matched L0 (no training)."""
    from sae_lens import TopKSAE, TopKSAEConfig

    x = _counted_activations(job)
    d_sae, k = job.d_sae, job.k
    if options.match is not None:
        d_sae, k = _width_and_l0(options.match, x, job)
    generator = torch.Generator().manual_seed(job.seed)
    decoder = torch.randn(d_sae, job.d_in, generator=generator)
    decoder /= decoder.norm(dim=-1, keepdim=True)
    sae = TopKSAE(TopKSAEConfig(d_in=job.d_in, d_sae=d_sae, k=k, metadata=job.metadata(baseline="random")))
    with torch.no_grad():
        sae.W_dec.copy_(decoder)
        sae.W_enc.copy_(decoder.T)
        sae.b_enc.zero_()
        sae.b_dec.copy_(x.mean(0))
    return sae.eval()


def _width_and_l0(path: Path, x: torch.Tensor, job: TrainingJob) -> tuple[int, int]:
    from sae_lens import SAE

    if not (path / "cfg.json").is_file():
        raise InvalidOption(f"--set match={path}: no sae-lens SAE there (cfg.json missing)", "pass an SAE directory")
    reference = SAE.load_from_disk(str(path), device="cpu").eval()
    if reference.cfg.d_in != job.d_in:
        raise InvalidOption(
            f"--set match={path}: its d_in is {reference.cfg.d_in}, the hook's is {job.d_in}",
            "match an SAE trained on the same hook",
        )
    with torch.no_grad():
        l0 = (reference.encode(x[:4096]) > 0).float().sum(-1).mean().item()
    return reference.cfg.d_sae, max(1, round(l0))


@register_training_architecture("pca", options=PCAOptions)
def build_pca(job: TrainingJob, options: PCAOptions) -> Any:
    """Signed principal components as a non-negative standard SAE (no training)."""
    from sae_lens import StandardSAE, StandardSAEConfig

    x = _counted_activations(job).double()
    n = options.n_components or job.d_in
    if n > job.d_in:
        raise InvalidOption(f"--set n_components={n} exceeds d_in {job.d_in}", f"use at most {job.d_in}")
    mean = x.mean(0)
    covariance = (x - mean).T @ (x - mean) / (x.shape[0] - 1)
    _, eigenvectors = torch.linalg.eigh(covariance)
    components = eigenvectors.flip(-1)[:, :n].T.float()  # [n, d_in], largest variance first
    sae = StandardSAE(StandardSAEConfig(d_in=job.d_in, d_sae=2 * n, metadata=job.metadata(baseline="pca")))
    with torch.no_grad():
        sae.W_dec.copy_(torch.cat([components, -components]))
        sae.W_enc.copy_(torch.cat([components, -components]).T)
        sae.b_enc.zero_()
        sae.b_dec.copy_(mean.float())
    return sae.eval()
