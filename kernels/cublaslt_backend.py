"""``linear`` through cuBLASLt with the algorithm a measured table names (CUDA devices).

``kernels/cublaslt_algos.json`` lists, per (GPU, cuBLASLt version, rows, N, K, dtype), the
algorithm that beat torch's linear on that GPU (``bench/cublaslt_algos.py --write-table``), as
the 64-byte algorithm record cuBLASLt's heuristic returned. A call of a listed shape asks the
heuristic once for its candidates, takes the one equal to the recorded algorithm (none equal,
e.g. another library version: torch's linear, as for every shape not listed) and runs it on the
current stream, so decode CUDA graphs capture it. A launch cuBLASLt refuses (an error status:
nothing ran) is logged and that shape goes to torch's linear from then on. Eager calls of listed
shapes pay a ctypes call (a few microseconds of host time) instead of torch's dispatch.

``on_sms(N)`` is the same product aimed at N SMs for any row count (the descriptor's SM count
target, the heuristic's first candidate under it): the GEMMs of a pipeline unit capped at N SMs
(``registry.register_on_sms``, ``Ops.on_sms``).

Registered above the torch reference, so CUDA devices use it (``NANOLANG_KERNELS=linear=torch``
turns it off); on a GPU or library version the table does not name, every call is torch's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import torch

from kernels import cublaslt, reference
from kernels.registry import register, register_on_sms

TABLE = Path(__file__).with_name("cublaslt_algos.json")
WORKSPACE_BYTES = 32 << 20  # the preference the table was measured with (the heuristic's input)
CANDIDATES = 8
MAX_ROWS = 1024  # the largest decode graph: the table lists nothing above it
PRIORITY = 1  # above torch's linear (0): shapes the table does not list go to torch's linear

ALIGN = 256  # bytes: the heuristic's default assumption about every operand's address
logger = logging.getLogger(__name__)

TableKey = tuple[str, int, int, int, int, int]  # GPU, library version, rows, N, K, dtype bytes
# (device, rows, N, K, dtype) whose recorded algorithm cuBLASLt refused at launch
_REFUSED: set[tuple[int, int, int, int, torch.dtype]] = set()
_REFUSED_ON_SMS: set[tuple[int, int, int, int, torch.dtype, int]] = set()  # the same, per SM target


@dataclass(frozen=True)
class Entry:
    algo: tuple[int, ...]  # the 8 words of cublasLtMatmulAlgo_t
    speedup: float


def parse_table(data: dict[str, Any]) -> dict[TableKey, Entry]:
    """The table's entries by key (ValueError: not such a table)."""
    out: dict[TableKey, Entry] = {}
    try:
        for e in data["entries"]:
            algo = tuple(int(w) for w in e["algo"])
            if len(algo) != 8:
                raise ValueError(f"algo has {len(algo)} words, not 8")
            key = (str(e["device"]), int(e["version"]), int(e["rows"]), int(e["n"]), int(e["k"]),
                   int(e["dtype_bytes"]))  # fmt: skip
            out[key] = Entry(algo, float(e["speedup"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a cuBLASLt algorithm table ({exc!r})") from None
    return out


@cache
def _table(path: Path = TABLE) -> dict[TableKey, Entry]:
    if not path.exists():
        return {}
    try:
        return parse_table(json.loads(path.read_text()))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@cache
def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


@cache
def _workspace(index: int) -> torch.Tensor:
    return torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=f"cuda:{index}")


@cache
def _plan(index: int, rows: int, n: int, k: int, dtype: torch.dtype) -> Any:
    """(plan, algorithm) for a listed shape whose recorded algorithm the heuristic still offers,
    else None."""
    key = (_device_name(index), cublaslt.version(), rows, n, k, torch.finfo(dtype).bits // 8)
    entry = _table().get(key)
    if entry is None:
        return None
    plan = cublaslt.LtPlan(n, k, rows, dtype, index)
    for algo, _ in plan.candidates(WORKSPACE_BYTES, CANDIDATES):
        if tuple(algo.data) == entry.algo:
            return plan, algo
    plan.close()
    logger.warning("cuBLASLt no longer offers the recorded algorithm for %d x %d @ %d x %d: "
                   "torch's linear runs it", rows, k, n, k)  # fmt: skip
    return None


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; the table's algorithm where it lists this shape. Written
    into ``out`` when given (``kernels.reference.linear``'s contract)."""
    if not _eligible(x, weight, bias):
        return reference.linear(x, weight, bias, out)
    rows = x.numel() // x.shape[-1]
    if rows > MAX_ROWS:
        return reference.linear(x, weight, bias, out)
    key = (x.device.index or 0, rows, weight.shape[0], weight.shape[1], x.dtype)
    found = _plan(*key) if rows and key not in _REFUSED else None
    return _run(found, key, x, weight, out)


@cache
def _plan_on_sms(index: int, rows: int, n: int, k: int, dtype: torch.dtype, sms: int) -> Any:
    """(plan, algorithm) of a product aimed at ``sms`` SMs: the heuristic's first candidate
    under that target (the measured table is for the whole GPU), else None."""
    plan = cublaslt.LtPlan(n, k, rows, dtype, index, sm_count=sms)
    found = plan.candidates(WORKSPACE_BYTES, 1)
    if found:
        return plan, found[0][0]
    plan.close()
    return None


def linear_on_sms(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    *,
    num_sms: int,
) -> torch.Tensor:
    """``linear`` aimed at ``num_sms`` SMs (cuBLASLt's SM count target), for a GEMM beside
    attention on the other SMs (a pipeline plan's carve layout): the heuristic picks, and a
    persistent kernel sizes its grid, for that many SMs rather than counting on all. Any row
    count; what cuBLASLt cannot run this way goes to torch's linear on all SMs."""
    if not _eligible(x, weight, bias) or num_sms < 1:
        return reference.linear(x, weight, bias, out)
    rows = x.numel() // x.shape[-1]
    index = x.device.index or 0
    key = (index, rows, weight.shape[0], weight.shape[1], x.dtype)
    refused = (*key, num_sms) in _REFUSED_ON_SMS
    found = _plan_on_sms(*key, num_sms) if rows and not refused else None
    return _run(found, key, x, weight, out, num_sms)


def on_sms(num_sms: int) -> Callable[..., torch.Tensor]:
    """The linear to run on a partition of ``num_sms`` SMs."""
    return partial(linear_on_sms, num_sms=num_sms)


def _eligible(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    return bias is None and x.is_cuda and x.dtype == weight.dtype and x.shape[-1] > 0


def _run(
    found: Any,
    key: tuple[int, int, int, int, torch.dtype],
    x: torch.Tensor,
    weight: torch.Tensor,
    out: torch.Tensor | None,
    num_sms: int = 0,
) -> torch.Tensor:
    """Run a found (plan, algorithm) into ``out`` or a new tensor; torch's linear when none was
    found, an operand is not aligned, or cuBLASLt refuses the launch (then for good)."""
    if found is None or not weight.is_contiguous() or weight.data_ptr() % ALIGN:
        return reference.linear(x, weight, None, out)
    index, rows = key[0], key[1]
    x2 = x.reshape(rows, x.shape[-1])
    if not x2.is_contiguous() or x2.data_ptr() % ALIGN:  # a fresh, aligned copy
        x2 = x2.clone(memory_format=torch.contiguous_format)
    direct = (out is not None and out.dtype == x.dtype and out.is_contiguous()
              and out.data_ptr() % ALIGN == 0)  # fmt: skip
    y = out.view(rows, weight.shape[0]) if direct and out is not None else torch.empty(
        (rows, weight.shape[0]), dtype=x.dtype, device=x.device)  # fmt: skip
    plan, algo = found
    try:
        plan.run(x2, weight, y, algo, _workspace(index))
    except RuntimeError as exc:  # refused at launch (nothing ran): torch's linear from now on
        logger.warning("cuBLASLt refused %d x %d @ %d x %d (%s): torch's linear runs it",
                       rows, weight.shape[1], weight.shape[0], weight.shape[1], exc)  # fmt: skip
        if num_sms:
            _REFUSED_ON_SMS.add((*key, num_sms))
        else:
            _REFUSED.add(key)
        return reference.linear(x, weight, None, out)
    if out is None:
        return y.view(*x.shape[:-1], weight.shape[0])
    if not direct:
        out.copy_(y.view_as(out))
    return out


def available(device: torch.device) -> bool:
    return device.type == "cuda" and cublaslt.available()


register("linear", "cublaslt", linear, priority=PRIORITY, available=available)
register_on_sms("linear", "cublaslt", on_sms)
