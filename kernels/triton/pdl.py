"""Programmatic dependent launch (PDL) for the small Triton kernels between a step's GEMMs.

A decode step runs some 350 kernels, about 160 of them small Triton ones (the norms, the
activation, rope + KV store, decode attention and its merge) between cuBLAS GEMMs. Normally a
kernel starts only after the one before it has completed. Launched with PDL (Hopper and later,
``launch_pdl`` in Triton), a kernel may be launched while its predecessor's last programs drain,
and waits (``gdc_wait``, grid dependency control) at its very start until the predecessor has
completed and its writes are visible. Because every such kernel waits before it reads anything,
the order of effects is the stream's, also transitively; and since none of them signals its
dependents early, a kernel never takes SM slots from a predecessor that still has programs to
place. What it can save is the launch latency at each boundary, inside CUDA graphs too.

Opt-in until measured: ``NANOLANG_PDL=1`` (read once per process; ``0``, the default, launches
as before). Used only on CUDA devices of compute capability 9 or more with a Triton that has
grid dependency control, never on the interpreter.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import torch
import triton.language as tl

ENV = "NANOLANG_PDL"


def requested() -> bool:
    """``NANOLANG_PDL``: ``1`` asks for PDL, ``0`` or unset does not (ValueError otherwise)."""
    value = os.environ.get(ENV, "0")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def supported() -> bool:
    """Whether this Triton has grid dependency control and the ``launch_pdl`` launch option,
    and compiles for a GPU (not the interpreter)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return False
    cuda = getattr(getattr(tl, "extra", None), "cuda", None)
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
    except ImportError:
        return False
    return hasattr(cuda, "gdc_wait") and "launch_pdl" in getattr(
        CUDAOptions, "__dataclass_fields__", {}
    )


@cache
def enabled(device_type: str, index: int) -> bool:
    """Whether launches on this device use PDL (the environment is read once per process)."""
    if not requested() or device_type != "cuda" or not supported():
        return False
    return torch.cuda.get_device_capability(index)[0] >= 9


def use_pdl(t: torch.Tensor) -> bool:
    """Whether the launches over ``t``'s device use PDL (the kernels' ``USE_PDL``)."""
    return enabled(t.device.type, t.device.index or 0)


def launch_options(use: bool) -> dict[str, Any]:
    """The launch keyword for a kernel launched with PDL (none otherwise, so that a Triton
    without the option never sees it)."""
    return {"launch_pdl": True} if use else {}
