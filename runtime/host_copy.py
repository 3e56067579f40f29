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

from kernels.host_copy import pinned, to_device

__all__ = ["list_to_device", "pinned", "to_device"]


def list_to_device(
    data: Sequence[int] | Sequence[float], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A 1-D tensor of ``data`` on ``device``, without waiting for the device's queued work."""
    return to_device(torch.tensor(data, dtype=dtype), device)
