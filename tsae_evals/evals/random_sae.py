"""The random-SAE baseline every eval that needs one reads its scores against (temporal stability, the probes):
a random unit-norm dictionary of the evaluated SAE's width, TopK at its L0."""

from __future__ import annotations

import functools

import torch


class RandomTopK:
    """The random-SAE baseline: unit-norm random dictionary of the same width, encoder = its transpose, TopK at
    the evaluated SAE's L0, centred on the calibration inputs' mean. Separates "the activations are smooth" from
    "the dictionary is smooth"."""

    def __init__(self, inputs: torch.Tensor, d_sae: int, k: int, seed: int) -> None:
        self.encoder = _random_encoder(d_sae, inputs.shape[-1], seed, inputs.device, inputs.dtype)
        self.centre = inputs.reshape(-1, inputs.shape[-1]).mean(0)
        self.k = min(k, d_sae)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        pre = torch.relu((inputs - self.centre) @ self.encoder)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)


@functools.lru_cache(maxsize=4)
def _random_encoder(d_sae: int, d_in: int, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """RandomTopK's encoder `[d_in, d_sae]`, drawn once per shape and seed (every SAE of that width in a process
    shares it; the CPU draw of d_sae x d_in float64 normals is a fixed cost of tens of ms per run otherwise). Read
    only."""
    generator = torch.Generator().manual_seed(seed + 1)  # CPU draws: the same dictionary on every device
    directions = torch.randn(d_sae, d_in, generator=generator, dtype=torch.float64)
    return (directions / directions.norm(dim=-1, keepdim=True)).T.to(device, dtype)
