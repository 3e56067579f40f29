"""y = x @ W^T for decode-sized row counts, with tiles chosen per weight shape.

At a few hundred rows cuBLAS tiles Llama's narrow projections coarsely: on the H200 its kernels
for 256 rows of qkv (6,144 x 4,096) and o (4,096 x 4,096) cover 48 and 32 output tiles of 132 SMs
and run at 505-532 TFLOP/s (docs/performance.md, "Each GEMM alone"). This kernel covers the output
with smaller tiles, each program one [BLOCK_M, BLOCK_N] tile over the whole K, both operands read
by TMA copies; the programs of one weight slice are adjacent, so a slice is read from HBM once.

It runs only where a measured table says it beats cuBLAS (``linear_configs.json``, written by
``bench/skinny_linear.py --write-table`` on the GPU it was measured on); every other call, and
every GPU without TMA, is ``torch.nn.functional.linear``. The table ships the nine H200 shapes
it won by 3% or more (16-128 rows; docs/performance.md, "Decode-sized GEMM tiles" and the ninth
session's section); the kernel is opt-in (``NANOLANG_KERNELS=linear=triton``): at 256-1,024 rows
cuBLAS is faster, and in the engine the tiles measured 1.003-1.005x on the tail workloads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from kernels import reference

TABLE = Path(__file__).with_name("linear_configs.json")
MAX_ROWS = 1024  # above this, cuBLAS's large tiles are the right ones


@dataclass(frozen=True)
class LinearConfig:
    block_m: int
    block_n: int
    block_k: int
    num_stages: int
    num_warps: int

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_k"):
            v = getattr(self, name)
            if v < 16 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {v}")
        if self.num_stages < 1 or self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"bad num_stages {self.num_stages} / num_warps {self.num_warps}")

    def programs(self, rows: int, n: int) -> int:
        return triton.cdiv(rows, self.block_m) * triton.cdiv(n, self.block_n)


@triton.jit
def linear_kernel(
    x_desc, w_desc, y_desc, M, N, K,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    # row tiles vary fastest: the programs that share a weight slice run side by side
    off_m = (pid % tiles_m) * BLOCK_M
    off_n = (pid // tiles_m) * BLOCK_N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        a = x_desc.load([off_m, k])  # [BLOCK_M, BLOCK_K]; rows past M read as zeros
        b = w_desc.load([off_n, k])  # [BLOCK_N, BLOCK_K]
        acc = tl.dot(a, b.T, acc)
    y_desc.store([off_m, off_n], acc.to(y_desc.dtype))  # rows and columns past the end dropped


def linear_tiles(
    x: torch.Tensor, weight: torch.Tensor, config: LinearConfig, out: torch.Tensor | None = None
) -> torch.Tensor:
    """x [M, K] @ weight[N, K]^T with ``config``'s tiles (no checks of the table; for tests and
    the benchmark), into ``out`` [M, N] when given. x, weight and out: contiguous bf16 or fp16
    rows of 16-byte multiples at 16-byte aligned addresses."""
    m, k = x.shape
    n = weight.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device) if out is None else out
    if m == 0:
        return y
    c = config
    x_desc = TensorDescriptor.from_tensor(x, [c.block_m, c.block_k])
    w_desc = TensorDescriptor.from_tensor(weight, [c.block_n, c.block_k])
    y_desc = TensorDescriptor.from_tensor(y, [c.block_m, c.block_n])
    linear_kernel[(c.programs(m, n),)](
        x_desc, w_desc, y_desc, m, n, k,
        BLOCK_M=c.block_m, BLOCK_N=c.block_n, BLOCK_K=c.block_k, STAGES=c.num_stages,
        num_warps=c.num_warps,
    )  # fmt: skip
    return y


def row_bucket(rows: int) -> int:
    """The table's row key: the next power of two (at least 16)."""
    return max(16, triton.next_power_of_2(rows))


@cache
def _table(path: Path = TABLE) -> dict[tuple[str, int, int, int, int], LinearConfig]:
    """(GPU name, row bucket, N, K, dtype bytes) -> config, from the measured table."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        out = {}
        for e in data.get("entries", []):
            key = (e["device"], int(e["rows"]), int(e["n"]), int(e["k"]), int(e["dtype_bytes"]))
            out[key] = LinearConfig(**e["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a linear-config table ({exc!r})") from None
    return out


@cache
def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


@cache
def _has_tma(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def _tma_ready(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.is_cuda
        and _has_tma(x.device.index or 0)
        and x.data_ptr() % 16 == 0
        and weight.data_ptr() % 16 == 0
        and x.dtype in (torch.bfloat16, torch.float16)
        and weight.dtype == x.dtype
        and weight.is_contiguous()
        and (x.shape[-1] * x.element_size()) % 16 == 0
        and (weight.shape[0] * x.element_size()) % 16 == 0
    )


def config_for(x: torch.Tensor, weight: torch.Tensor) -> LinearConfig | None:
    """The measured config of this call's shape on this GPU, or None (cuBLAS)."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if rows == 0 or rows > MAX_ROWS or not _tma_ready(x, weight):
        return None
    key = (_device_name(x.device.index or 0), row_bucket(rows), weight.shape[0],
           weight.shape[1], x.element_size())  # fmt: skip
    return _table().get(key)


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; the tiles of the measured table where it has this shape.
    Written into ``out`` when given (``kernels.reference.linear``'s contract)."""
    config = None if bias is not None else config_for(x, weight)
    if config is None:
        return reference.linear(x, weight, bias, out)
    x2 = x.reshape(-1, x.shape[-1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    shape = (*x.shape[:-1], weight.shape[0])
    if out is None:
        return linear_tiles(x2, weight, config).view(shape)
    if out.is_contiguous() and out.data_ptr() % 16 == 0:
        linear_tiles(x2, weight, config, out.view(-1, weight.shape[0]))
    else:
        out.copy_(linear_tiles(x2, weight, config).view(shape))
    return out
