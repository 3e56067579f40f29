"""Streaming-read ceiling: the bandwidth a plain, well-pipelined Triton read reaches."""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

ROW = tl.constexpr(128)  # bf16 elements per row: 256 B, one K or V row of head dim 128


@triton.jit
def stream_read_kernel(
    src_ptr, out_ptr, n_rows, num_programs, BLOCK_R: tl.constexpr, STAGES: tl.constexpr
):
    rows = tl.arange(0, BLOCK_R)
    cols = tl.arange(0, ROW)
    acc = tl.zeros((BLOCK_R, ROW), tl.float32)
    start = tl.program_id(0) * BLOCK_R
    for r0 in tl.range(start, n_rows, num_programs * BLOCK_R, num_stages=STAGES):
        ptrs = src_ptr + (r0 + rows).to(tl.int64)[:, None] * ROW + cols[None, :]
        acc += tl.load(ptrs, mask=(r0 + rows)[:, None] < n_rows, other=0.0).to(tl.float32)
    tl.store(out_ptr + tl.program_id(0) * ROW + cols, tl.sum(acc, 0))


def stream_read(
    src: torch.Tensor, programs: int, block_r: int, stages: int, warps: int
) -> Callable[[], None]:
    """A launch that reads all of src [n_rows * ROW] bf16 with `programs` persistent programs."""
    n_rows = src.numel() // ROW
    out = torch.empty(programs * ROW, dtype=torch.float32, device=src.device)

    def launch() -> None:
        stream_read_kernel[(programs,)](
            src, out, n_rows, programs, BLOCK_R=block_r, STAGES=stages, num_warps=warps
        )

    return launch
