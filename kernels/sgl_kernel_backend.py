"""sgl-kernel (SGLang's ahead-of-time CUDA kernels) for the pointwise operators and the sampling
filters; importing fails without ``sgl_kernel``, and the registry then treats the backend as absent.

What sgl-kernel 0.4.5 provides and how each operator maps onto it (``torch.ops.sgl_kernel``; the
compiled ops are called directly because the package's Python wrappers hand norms and sampling to
FlashInfer whenever FlashInfer is importable, and this backend must run sgl-kernel's own code):

- ``rms_norm``: ``rmsnorm`` (fp16 / bf16; other dtypes take the torch reference).
- ``add_rms_norm``: ``fused_add_rmsnorm``, IN PLACE: ``residual`` receives the sum and ``x`` the
  normed sum, and the two input tensors are returned. The model never reads either input again.
- ``rotary``: ``rotary_embedding`` (rotate-half / NeoX style), IN PLACE on ``q`` and ``k``, which
  are returned. Its cos|sin table must have the activations' dtype, so a table of another dtype is
  converted once and kept; with bf16 activations the rotation is computed in bf16, as in SGLang.
- ``silu_and_mul``: ``silu_and_mul`` on a contiguous input (half width a multiple of 16 bytes).
- ``sample``: ``top_k_renorm_probs`` and ``top_p_renorm_probs`` pick the kept tokens; min-p and the
  exponential race on the caller's noise stay in torch, so a request's draw still depends only on
  its own seed (sgl-kernel's samplers draw from their own generator instead).

Not provided by 0.4.5: a rotary kernel that also writes the KV cache (SGLang's
``apply_rope_with_cos_sin_cache_inplace`` with a KV-buffer argument lives in the sglang package's
JIT kernels), a KV store, attention for this cache layout and GEMMs; those stay with the others.
Priorities follow the measurements in docs/performance.md (Triton first, then this backend).
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import sgl_kernel  # noqa: F401  (loads torch.ops.sgl_kernel)
except ImportError:
    raise
except Exception as exc:  # a wheel built for another torch / CUDA fails with OSError etc.
    raise ImportError(f"sgl_kernel is installed but failed to load: {exc}") from exc

from kernels import reference
from kernels.registry import register

BACKEND = "sgl_kernel"
# Below Triton's 10 for every operator: on Llama-3-8B shapes (bench/pointwise_ops.py,
# docs/performance.md) Triton was faster for RoPE, SiLU-and-mul and sampling at every size, and the
# norms were within 1 us per call at 1-256 tokens but slower at 1024-2048 once timed after the GEMM
# that feeds them (alone, in place on L2-resident buffers, the fused add+norm looked faster at
# 2048). Above torch's 0: the backend serves where Triton is absent, and NANOLANG_KERNELS selects it
# per operator (``add_rms_norm=sgl_kernel``).
PRIORITIES = dict.fromkeys(("rms_norm", "add_rms_norm", "rotary", "silu_and_mul", "sample"), 5)
OPERATORS = tuple(PRIORITIES)
# Programmatic dependent launch for the norms, sgl-kernel's own default on Hopper: after a cuBLAS
# GEMM it saved 0.2-1.4 us per norm at 1-256 tokens; at 1024-2048 it was within 1.4 us either way.
ENABLE_PDL = True

_HALF = (torch.float16, torch.bfloat16)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_tables: dict[tuple[int, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _ops() -> Any:
    return torch.ops.sgl_kernel


def _pdl(device: torch.device) -> bool:
    """Programmatic dependent launch of the norms (sgl-kernel's default on Hopper and newer)."""
    return ENABLE_PDL and torch.cuda.get_device_capability(device)[0] >= 9


def _rows(t: torch.Tensor) -> torch.Tensor | None:
    """A [rows, hidden] view sharing t's storage (last dim contiguous), or None."""
    if t.stride(-1) != 1:
        return None
    if t.dim() == 2:
        return t
    return t.view(-1, t.shape[-1]) if t.is_contiguous() else None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim (fp16 / bf16 with a weight of the same dtype)."""
    rows = _rows(x)
    if x.dtype not in _HALF or weight.dtype != x.dtype or rows is None or x.numel() == 0:
        return reference.rms_norm(x, weight, eps)
    out = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    _ops().rmsnorm.default(out, rows, weight, eps, _pdl(x.device))
    return out.view(x.shape)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """In place: residual += x; x = rms_norm(residual). Returns (x, residual)."""
    rows_x, rows_r = _rows(x), _rows(residual)
    same = x.dtype == residual.dtype == weight.dtype and x.shape == residual.shape
    if not same or x.dtype not in _FLOATS or rows_x is None or rows_r is None or x.numel() == 0:
        return reference.add_rms_norm(x, residual, weight, eps)
    _ops().fused_add_rmsnorm.default(rows_x, rows_r, weight, eps, _pdl(x.device))
    return x, residual


def _table(cos_sin: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """cos_sin in dtype, converted once per table (the source is kept so its address stays its)."""
    if cos_sin.dtype == dtype:
        return cos_sin
    key = (cos_sin.data_ptr(), dtype)
    if key not in _tables:
        _tables[key] = (cos_sin, cos_sin.to(dtype).contiguous())
    return _tables[key][1]


def rotary(
    q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half RoPE of q [T, Hq, D] and k [T, Hk, D] in place; returns (q, k)."""
    head_dim = q.shape[-1]
    ok = (
        q.dtype == k.dtype
        and q.dtype in _FLOATS
        and q.dim() == k.dim() == 3
        and q.stride(-1) == k.stride(-1) == 1
        and q.stride(1) == k.stride(1)  # the kernel takes one head stride for both
        and cos_sin.shape[-1] == head_dim
        and positions.dim() == 1
    )
    if not ok:
        return reference.rotary(q, k, positions, cos_sin)
    if q.shape[0] == 0:
        return q, k
    _ops().rotary_embedding.default(
        positions.long(), q, k, head_dim, _table(cos_sin, q.dtype), True
    )
    return q, k


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [..., 2I] = gate | up -> silu(gate) * up [..., I]."""
    half = x.shape[-1] // 2
    if x.dtype not in _FLOATS or (half * x.element_size()) % 16 != 0:
        return reference.silu_and_mul(x)
    out = torch.empty((*x.shape[:-1], half), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    _ops().silu_and_mul.default(out, x.contiguous())
    return out


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    top_k: torch.Tensor,
    min_p: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """kernels.reference.sample with the top-k and top-p sets found by sgl-kernel's kernels."""
    greedy = temperature == 0
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature).unsqueeze(1)
    probs = torch.softmax(scaled, dim=-1).float().contiguous()
    vocab = probs.shape[-1]
    k = torch.where((top_k <= 0) | (top_k > vocab), torch.full_like(top_k, vocab), top_k)
    by_k = torch.empty_like(probs)
    by_p = torch.empty_like(probs)
    ops = _ops()
    ops.top_k_renorm_probs.default(probs, by_k, k.int(), 0)
    ops.top_p_renorm_probs.default(probs, by_p, top_p.float(), 1.0)
    p_max = probs.amax(dim=-1, keepdim=True)
    keep = (by_k > 0) & (by_p > 0) & (probs >= min_p.unsqueeze(1) * p_max)
    keep |= probs == p_max  # the top token always stays, as in the reference
    sampled = (probs.masked_fill(~keep, 0.0) / noise).argmax(dim=-1)
    return torch.where(greedy, logits.argmax(dim=-1), sampled)


def available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


for _op in OPERATORS:
    register(_op, BACKEND, globals()[_op], priority=PRIORITIES[_op], available=available)
