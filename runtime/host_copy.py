"""Host-to-device copies of per-iteration inputs that never make the host wait for the device.

``torch.tensor(data, device="cuda")`` and a blocking ``.to("cuda")`` synchronize the stream: the
host stops until every kernel queued so far has run. Inside a launch that undoes asynchronous
scheduling (the device then idles while the host forms the next batch), so every input an
iteration uploads goes through :func:`to_device`: staged in pinned memory (torch's caching host
allocator, which keeps a buffer until the copy that reads it has run) and copied in stream order.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def list_to_device(
    data: Sequence[int] | Sequence[float], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A 1-D tensor of ``data`` on ``device``, without waiting for the device's queued work."""
    return to_device(torch.tensor(data, dtype=dtype), device)
