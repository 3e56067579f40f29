"""The all-reduce of tensor parallelism's hidden states, chosen by size.

``EngineConfig.allreduce`` picks the path of the group's own all-reduces (the o and down
projections' sums in the dense forward, the embedding's):

- ``"nccl"``: the process group's ``all_reduce`` (NCCL on GPUs, gloo on the CPU);
- ``"symm_mem"``: PyTorch's symmetric-memory two-shot all-reduce over NVLink peer memory for
  tensors of up to ``EngineConfig.symm_mem_max_bytes``, NCCL above. Each rank registers one
  buffer of that size once (``rendezvous``, a collective); an all-reduce copies its rows into the
  buffer, sums in place (each rank reduces its share of the buffer from every peer's copy and
  writes the sum back to every peer), and copies the sum out. Plain kernels on fixed addresses:
  they can be captured in CUDA graphs. NVLink multicast stays off: the worker sets
  ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1`` before CUDA starts, and a rendezvous that reports a
  multicast address anyway is refused.

Only the group's own all-reduces take the symmetric-memory path: the network stage's collectives
(a pipeline's communicators with a CTA cap) are NCCL, so two symmetric-memory all-reduces never
run at once on two streams over the one buffer.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from runtime.config import ALLREDUCE_CHOICES

# multicast (NVLS) off for NCCL, PyTorch's symmetric memory and NVSHMEM; set before CUDA starts
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                 "NVSHMEM_DISABLE_NVLS": "1"}  # fmt: skip


class SymmMemAllReduce:
    """The two-shot all-reduce over one registered buffer of ``max_bytes`` per rank."""

    def __init__(
        self, group: Any, device: torch.device, dtype: torch.dtype, max_bytes: int
    ) -> None:
        import torch.distributed._symmetric_memory as symm_mem

        if os.environ.get("TORCH_SYMM_MEM_DISABLE_MULTICAST") != "1":
            raise RuntimeError(
                "the symmetric-memory all-reduce needs TORCH_SYMM_MEM_DISABLE_MULTICAST=1 "
                "(NVLink multicast stays off)"
            )
        group = dist.group.WORLD if group is None else group
        self.group_name: str = group.group_name
        numel = max_bytes // torch.empty((), dtype=dtype).element_size()
        self.buffer = symm_mem.empty(numel, dtype=dtype, device=device)
        handle = symm_mem.rendezvous(self.buffer, self.group_name)  # collective
        if getattr(handle, "multicast_ptr", 0):
            raise RuntimeError("the symmetric-memory rendezvous made a multicast address")
        self.max_bytes = numel * self.buffer.element_size()
        self.write_out = hasattr(torch.ops.symm_mem, "two_shot_all_reduce_out")

    def fits(self, t: torch.Tensor) -> bool:
        return (
            t.dtype == self.buffer.dtype
            and t.device == self.buffer.device
            and t.is_contiguous()
            and 0 < t.numel() <= self.buffer.numel()
        )

    def __call__(self, t: torch.Tensor) -> None:
        """Sum ``t`` over the group, in place (``fits(t)`` must hold). Where the build has the
        ``_out`` form, the sum is written straight into ``t`` (one kernel fewer per call than
        summing in the buffer and copying out; the buffer is scratch either way)."""
        view = self.buffer[: t.numel()]
        view.copy_(t.view(-1))
        ops = torch.ops.symm_mem
        if self.write_out:
            ops.two_shot_all_reduce_out(view, "sum", self.group_name, t.view(-1))
        else:
            ops.two_shot_all_reduce_(view, "sum", self.group_name)
            t.view(-1).copy_(view)


class GroupAllReduce:
    """A group's own in-place all-reduce: ``symm`` (a ``SymmMemAllReduce``, or any callable
    with ``fits``) for the tensors it takes, the process group's ``all_reduce`` for the rest."""

    def __init__(self, group: Any = None, symm: Any = None) -> None:
        self.group, self.symm = group, symm

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.symm is not None and self.symm.fits(t):
            self.symm(t)
        else:
            dist.all_reduce(t, group=self.group)
        return t

    def describe(self) -> str:
        if self.symm is None:
            return "nccl"
        form = ", written out" if getattr(self.symm, "write_out", False) else ""
        return f"symm_mem two-shot{form} up to {self.symm.max_bytes} bytes, nccl above"


def group_all_reduce(
    kind: str, group: Any, device: torch.device, dtype: torch.dtype, max_bytes: int
) -> GroupAllReduce:
    """``EngineConfig.allreduce`` on one rank (collective for ``symm_mem``: every rank calls it
    in the same order). The symmetric-memory path needs CUDA; a clear error otherwise."""
    if kind not in ALLREDUCE_CHOICES:
        raise ValueError(f"allreduce must be one of {', '.join(ALLREDUCE_CHOICES)}, got {kind!r}")
    if kind == "nccl":
        return GroupAllReduce(group)
    if device.type != "cuda":
        raise ValueError("allreduce='symm_mem' needs CUDA GPUs (NVLink peer memory)")
    op = GroupAllReduce(group, SymmMemAllReduce(group, device, dtype, max_bytes))
    op(torch.zeros(1, 64, dtype=dtype, device=device))  # first use outside any graph capture
    return op
