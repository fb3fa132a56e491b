"""Settings of SAE-Bench's core eval as we run it (every metric category always on)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CoreConfig(BaseModel):
    """How many windows SAE-Bench's core metrics read; which metrics run is not a choice: all of them do."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    batch_size_prompts: int = Field(default=8, ge=1)
    """Windows per batch."""
    n_eval_reconstruction_batches: int = Field(default=4, ge=1)
    """Batches for KL and CE loss recovered (three full model forwards each: clean, SAE spliced in, ablated)."""
    n_eval_sparsity_variance_batches: int = Field(default=4, ge=1)
    """Batches for reconstruction quality, shrinkage, sparsity and feature density."""
    exclude_special_tokens_from_reconstruction: bool = False
    """Leave BOS/EOS/PAD positions unreconstructed when splicing the SAE in (SAE-Bench's switch)."""

    def windows_needed(self) -> int:
        return self.batch_size_prompts * max(self.n_eval_reconstruction_batches, self.n_eval_sparsity_variance_batches)
