"""Host-to-device copies that never make the host wait for the device (``runtime.host_copy``
explains why): staged in pinned memory, which torch's caching host allocator keeps until the copy
that reads it has run, and copied in stream order. Here, the lowest layer, so that the attention
backends' per-batch uploads and the runtime's share one implementation."""

from __future__ import annotations

import torch


def pinned(t: torch.Tensor) -> torch.Tensor:
    """A host tensor in pinned memory, to copy into a device buffer with ``non_blocking=True``
    (torch's caching host allocator keeps it until the copy that reads it has run)."""
    return t if t.is_pinned() else t.pin_memory()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` (on the host) on ``device``, without waiting for the device's queued work."""
    if device.type != "cuda":
        return t
    return pinned(t).to(device, non_blocking=True)
