"""RMSNorm over the last dim, optionally fused with the residual add (one row per program)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton.pdl import launch_options, use_pdl


@triton.jit
def rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    res_out_ptr,
    stride_x,
    stride_r,
    stride_o,
    stride_ro,
    hidden,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    if USE_PDL:  # wait for the kernel before (launched early: kernels.triton.pdl)
        tl.extra.cuda.gdc_wait()
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < hidden
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_r + cols, mask=mask, other=0.0)
        # round the sum to the residual dtype first, exactly as the torch reference does
        x = (x.to(tl.float32) + r.to(tl.float32)).to(res_out_ptr.dtype.element_ty)
        tl.store(res_out_ptr + row * stride_ro + cols, x, mask=mask)
    xf = x.to(tl.float32)
    inv_rms = tl.rsqrt(tl.sum(xf * xf, axis=0) / hidden + eps)
    normed = (xf * inv_rms).to(x.dtype).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + cols, (w * normed).to(out_ptr.dtype.element_ty), mask=mask)


def launch_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shared launcher: x (and residual) [..., H] -> (normed [..., H], summed [..., H] or None)."""
    hidden = x.shape[-1]
    x2 = x.reshape(-1, hidden)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    sum_dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    out = torch.empty(x2.shape, dtype=torch.promote_types(weight.dtype, sum_dtype), device=x.device)
    res2 = res_out = None
    if residual is not None:
        res2 = residual.reshape(-1, hidden)
        if res2.stride(-1) != 1:
            res2 = res2.contiguous()
        res_out = torch.empty(x2.shape, dtype=sum_dtype, device=x.device)
    block = triton.next_power_of_2(hidden)
    pdl = use_pdl(x)
    rms_norm_kernel[(x2.shape[0],)](
        x2,
        res2 if res2 is not None else x2,
        weight,
        out,
        res_out if res_out is not None else out,
        x2.stride(0),
        res2.stride(0) if res2 is not None else 0,
        out.stride(0),
        res_out.stride(0) if res_out is not None else 0,
        hidden,
        eps,
        HAS_RESIDUAL=residual is not None,
        BLOCK=block,
        USE_PDL=pdl,
        num_warps=min(max(block // 512, 1), 8),
        **launch_options(pdl),
    )
    summed = res_out.view(x.shape) if res_out is not None else None
    return out.view(x.shape), summed


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim of x [..., H], in float32, returned like the reference."""
    out, _ = launch_rms_norm(x, None, weight, eps)
    return out
