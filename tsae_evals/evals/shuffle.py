"""The within-window shuffle null every temporal eval reads its scores against: one random permutation of the
positions of each window, applied alike to every tensor of that window. It keeps each latent's rate and each
position's active set and destroys order only."""

from __future__ import annotations

import torch


def shuffle_positions(generator: torch.Generator, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Apply the same random permutation of positions, one per window, to every tensor `[b, t, ...]`."""
    first = tensors[0]
    return gather_positions(shuffle_order(generator, first.shape[0], first.shape[1], first.device), *tensors)


def shuffle_order(generator: torch.Generator, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """`[batch, length]`: a random permutation of the positions of each window, drawn on the CPU (the same on every
    device) and copied to `device`."""
    order = torch.argsort(torch.rand(batch, length, generator=generator), dim=1)
    if device.type == "cuda":  # pinned and asynchronous: a pageable copy would wait for the whole stream
        return order.pin_memory().to(device, non_blocking=True)
    return order.to(device)


def gather_positions(order: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Reorder the positions of every tensor `[b, t, ...]` by `order [b, t]`."""
    batch, length = order.shape
    return [torch.gather(t, 1, order.view(batch, length, *([1] * (t.dim() - 2))).expand_as(t)) for t in tensors]
