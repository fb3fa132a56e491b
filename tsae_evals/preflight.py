"""Catch SAEs that cannot give meaningful numbers before compute is spent on them.

An untrained SAE that outputs zeros scores explained variance -0.785 and L0 0 in SAE-Bench's core eval, and
nothing there says the numbers are meaningless. These checks say it, in the summary and in every result JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE

MAX_DEAD_FRACTION = 0.99
# Trained sae-lens SAEs keep decoder rows near unit norm; a median outside [0.5, 1.5] means the latents' scales
# carry the magnitudes, which makes activation-based metrics incomparable across SAEs.
DECODER_NORM_TOLERANCE = 0.5


class PreflightReport(BaseModel):
    """Outcome of the checks on one probe batch."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    status: Literal["pass", "warn", "fail"]
    """`fail`: the SAE's numbers would be meaningless; `warn`: usable, but read the warnings."""
    problems: list[str]
    """Reasons for `fail`, one sentence each."""
    warnings: list[str]
    """Reasons for `warn`, one sentence each."""
    probe_tokens: int
    """Tokens in the probe batch (BOS excluded)."""
    explained_variance: float | None = None
    """1 - sum of squared reconstruction error / total variance of the input, on the probe batch."""
    mean_l0: float | None = None
    """Mean number of active latents per token on the probe batch."""
    dead_fraction: float | None = None
    """Share of latents that never fired on the probe batch."""
    decoder_norm_median: float | None = None
    """Median L2 norm of the decoder rows."""

    @classmethod
    def from_findings(cls, problems: list[str], warnings: list[str], **stats: Any) -> PreflightReport:
        status: Literal["pass", "warn", "fail"] = "fail" if problems else "warn" if warnings else "pass"
        return cls(status=status, problems=problems, warnings=warnings, **stats)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def headline(self) -> str:
        return "; ".join(self.problems or self.warnings) or "ok"


def _nonfinite_parameters(sae: SAE[Any]) -> list[str]:
    import torch

    tensors = {**dict(sae.named_parameters()), **dict(sae.named_buffers())}
    return sorted(
        name for name, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    )


def run_preflight(sae: SAE[Any], windows: torch.Tensor, first_scored: int = 0) -> PreflightReport:
    """Check `sae` on whole windows' activations `[batch, seq, d_in]`, scoring positions from `first_scored` on
    (sequence-aware SAEs see the BOS position as context, as in every eval)."""
    import torch

    activations = windows[:, first_scored:]
    problems: list[str] = []
    warnings: list[str] = []
    probe_tokens = int(activations.shape[0] * activations.shape[1])
    bad_parameters = _nonfinite_parameters(sae)
    if bad_parameters:
        problems.append(f"non-finite weights in {', '.join(bad_parameters)}")
        return PreflightReport.from_findings(problems, warnings, probe_tokens=probe_tokens)
    with torch.no_grad():
        latents = sae.encode(windows)
        reconstruction = sae.decode(latents)
    latents, reconstruction = latents[:, first_scored:], reconstruction[:, first_scored:]
    x = activations.reshape(-1, activations.shape[-1]).float()
    x_hat = reconstruction.reshape(-1, activations.shape[-1]).float()
    f = latents.reshape(-1, latents.shape[-1]).float()

    decoder_norm_median = float(sae.W_dec.detach().norm(dim=-1).median())
    if not torch.isfinite(x_hat).all() or not torch.isfinite(f).all():
        problems.append("the SAE outputs NaN or inf on real activations")
        return PreflightReport.from_findings(
            problems, warnings, probe_tokens=probe_tokens, decoder_norm_median=decoder_norm_median
        )
    total_variance = (x - x.mean(0)).pow(2).sum()
    explained_variance = float(1 - (x - x_hat).pow(2).sum() / total_variance)
    mean_l0 = float((f > 0).sum(-1).float().mean())
    dead_fraction = float(((f > 0).sum(0) == 0).float().mean())

    if x_hat.abs().max() == 0:
        problems.append("every reconstruction is exactly zero (an untrained or zeroed SAE?)")
    elif (x_hat - x_hat[0]).abs().max() <= 1e-6 * x_hat.abs().max():
        problems.append("the reconstruction is the same vector for every token")
    if mean_l0 == 0:
        problems.append("no latent fires on any probe token (L0 = 0)")
    elif dead_fraction > MAX_DEAD_FRACTION:
        problems.append(f"{dead_fraction:.1%} of latents never fire on {probe_tokens} probe tokens")
    if abs(decoder_norm_median - 1) > DECODER_NORM_TOLERANCE:
        warnings.append(f"median decoder row norm is {decoder_norm_median:.3g}, far from 1")
    if explained_variance < 0 and not problems:
        warnings.append(f"explained variance {explained_variance:.3f} < 0: worse than predicting the mean")
    return PreflightReport.from_findings(
        problems,
        warnings,
        probe_tokens=probe_tokens,
        explained_variance=explained_variance,
        mean_l0=mean_l0,
        dead_fraction=dead_fraction,
        decoder_norm_median=decoder_norm_median,
    )
