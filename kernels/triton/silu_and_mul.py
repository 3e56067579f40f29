"""SiLU(gate) * up over x [T, 2I] = gate | up."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton.pdl import launch_options, use_pdl


@triton.jit
def silu_and_mul_kernel(
    x_ptr, out_ptr, stride_x, stride_o, inter, BLOCK: tl.constexpr, USE_PDL: tl.constexpr
):
    if USE_PDL:  # wait for the kernel before (launched early: kernels.triton.pdl)
        tl.extra.cuda.gdc_wait()
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inter
    gate = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    up = tl.load(x_ptr + row * stride_x + inter + cols, mask=mask, other=0.0)
    g = gate.to(tl.float32)
    # round silu to the input dtype before the product, as torch does for F.silu(gate) * up
    act = (g / (1.0 + tl.exp(-g))).to(gate.dtype).to(tl.float32)
    tl.store(out_ptr + row * stride_o + cols, (act * up.to(tl.float32)).to(gate.dtype), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [..., 2I] -> silu(x[..., :I]) * x[..., I:] as [..., I]."""
    inter = x.shape[-1] // 2
    x2 = x.reshape(-1, 2 * inter)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    out = torch.empty((x2.shape[0], inter), dtype=x.dtype, device=x.device)
    block = min(triton.next_power_of_2(inter), 2048)
    grid = (x2.shape[0], triton.cdiv(inter, block))
    pdl = use_pdl(x)
    silu_and_mul_kernel[grid](x2, out, x2.stride(0), out.stride(0), inter, BLOCK=block,
                              USE_PDL=pdl, num_warps=4, **launch_options(pdl))  # fmt: skip
    return out.view(*x.shape[:-1], inter)
