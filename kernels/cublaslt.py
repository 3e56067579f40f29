"""cuBLASLt through ctypes: a linear (``x @ w.T``) with an algorithm chosen by measurement.

torch's linear lets cuBLAS pick one algorithm per shape from its heuristic; at decode-sized row
counts that pick can leave most SMs idle (e.g. 48 output tiles on 132 SMs). cuBLASLt's
heuristic returns several candidates per shape (other tiles, split-K, stream-K), so a measured
table of (weight shape, rows) -> algorithm can replace the first guess. This module only wraps
the library: finding it, building a plan for one shape, listing its candidates and running one
on torch tensors on the current stream (so it can be captured in a CUDA graph). Which candidate
wins is measured by ``bench/cublaslt_algos.py``.

The library is the one torch already loaded (same soname), so no extra package is needed.
"""

from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch

__all__ = ["LtPlan", "available", "lt_library", "version"]

# enums of cublasLt.h / library_types.h (stable across CUDA 11-13)
_COMPUTE_32F = 68
_R_32F, _R_16F, _R_16BF = 0, 2, 14
_DESC_TRANSA, _DESC_TRANSB = 3, 4
_DESC_SM_COUNT_TARGET = 15  # int32: SMs the heuristic and a persistent kernel's grid aim at
_OP_N, _OP_T = 0, 1
_PREF_MAX_WORKSPACE_BYTES = 1
_DTYPES = {torch.bfloat16: _R_16BF, torch.float16: _R_16F, torch.float32: _R_32F}


class LtAlgo(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64 * 8)]


class LtHeuristic(ctypes.Structure):
    _fields_ = [
        ("algo", LtAlgo),
        ("workspace_size", ctypes.c_size_t),
        ("state", ctypes.c_int),
        ("waves_count", ctypes.c_float),
        ("reserved", ctypes.c_int * 4),
    ]


def _candidates() -> list[str]:
    names = [f"libcublasLt.so.{v}" for v in (13, 12, 11)] + ["libcublasLt.so"]
    dirs = [os.path.join(os.path.dirname(torch.__file__), "lib")]
    for site in {os.path.dirname(os.path.dirname(torch.__file__))}:
        dirs += glob.glob(os.path.join(site, "nvidia", "cu*", "lib"))
        dirs += glob.glob(os.path.join(site, "nvidia", "cublas", "lib"))
    return names + [p for d in dirs for p in sorted(glob.glob(os.path.join(d, "libcublasLt.so*")))]


@cache
def lt_library() -> Any:
    """The loaded libcublasLt (the one torch uses when it is already in the process)."""
    errors = []
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
            continue
        _declare(lib)
        return lib
    raise OSError("libcublasLt not found: " + "; ".join(errors[-3:]))


def available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        lt_library()
    except OSError:
        return False
    return True


def version() -> int:
    """cublasLtGetVersion(), e.g. 130100 (a table of algorithms holds for one version)."""
    return int(lt_library().cublasLtGetVersion())


def _declare(lib: Any) -> None:
    vp, sz, i32 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
    lib.cublasLtGetVersion.argtypes = []
    lib.cublasLtGetVersion.restype = sz
    lib.cublasLtCreate.argtypes = [ctypes.POINTER(vp)]
    lib.cublasLtMatmulDescCreate.argtypes = [ctypes.POINTER(vp), i32, i32]
    lib.cublasLtMatmulDescSetAttribute.argtypes = [vp, i32, vp, sz]
    u64, i64 = ctypes.c_uint64, ctypes.c_int64
    lib.cublasLtMatrixLayoutCreate.argtypes = [ctypes.POINTER(vp), i32, u64, u64, i64]
    lib.cublasLtMatmulPreferenceCreate.argtypes = [ctypes.POINTER(vp)]
    lib.cublasLtMatmulPreferenceSetAttribute.argtypes = [vp, i32, vp, sz]
    # handle, op desc, A / B / C / D layouts, preference; count, results, returned count
    lib.cublasLtMatmulAlgoGetHeuristic.argtypes = [vp] * 7 + [
        i32, ctypes.POINTER(LtHeuristic), ctypes.POINTER(i32)
    ]  # fmt: skip
    # handle, desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc; algo, workspace, size,
    # stream
    lib.cublasLtMatmul.argtypes = [vp] * 12 + [ctypes.POINTER(LtAlgo), vp, sz, vp]
    for fn in ("cublasLtMatmulDescDestroy", "cublasLtMatrixLayoutDestroy",
               "cublasLtMatmulPreferenceDestroy"):  # fmt: skip
        getattr(lib, fn).argtypes = [vp]


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"cuBLASLt {what} failed with status {status}")


@cache
def _handle(device: int) -> ctypes.c_void_p:
    h = ctypes.c_void_p()
    with torch.cuda.device(device):
        _check(lt_library().cublasLtCreate(ctypes.byref(h)), "cublasLtCreate")
    return h


@dataclass
class LtPlan:
    """``out[rows, n] = x[rows, k] @ w[n, k].T`` for one (n, k, rows, dtype): the descriptors,
    kept for the plan's life. Column-major view: ``out.T (n x rows) = w (k x n, transposed) @
    x.T (k x rows)``, the same "TN" product torch's linear asks cuBLAS for. ``sm_count`` > 0
    sets the descriptor's SM count target: the heuristic's candidates, and the grid of a
    persistent kernel, aim at that many SMs (the rest left to a concurrent stream); 0: all."""

    n: int
    k: int
    rows: int
    dtype: torch.dtype
    device: int = 0
    sm_count: int = 0
    _descs: dict[str, ctypes.c_void_p] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        lib, cdt = lt_library(), _DTYPES[self.dtype]
        desc = ctypes.c_void_p()
        _check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), _COMPUTE_32F, _R_32F), "desc")
        for attr, op in ((_DESC_TRANSA, _OP_T), (_DESC_TRANSB, _OP_N)):
            val = ctypes.c_int32(op)
            _check(lib.cublasLtMatmulDescSetAttribute(desc, attr, ctypes.byref(val), 4), "trans")
        self._descs["op"] = desc
        if self.sm_count > 0:
            sms = ctypes.c_int32(self.sm_count)
            status = lib.cublasLtMatmulDescSetAttribute(desc, _DESC_SM_COUNT_TARGET,
                                                        ctypes.byref(sms), 4)  # fmt: skip
            _check(status, "sm count")
        for name, (r, c, ld) in {
            "a": (self.k, self.n, self.k), "b": (self.k, self.rows, self.k),
            "c": (self.n, self.rows, self.n),
        }.items():  # fmt: skip
            lay = ctypes.c_void_p()
            _check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(lay), cdt, r, c, ld), "layout")
            self._descs[name] = lay

    def candidates(self, workspace_bytes: int, count: int = 32) -> list[tuple[LtAlgo, int]]:
        """The heuristic's candidates, best guess first: (algorithm, workspace bytes it needs)."""
        lib, d = lt_library(), self._descs
        pref = ctypes.c_void_p()
        _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "preference")
        ws = ctypes.c_uint64(workspace_bytes)
        _check(
            lib.cublasLtMatmulPreferenceSetAttribute(
                pref, _PREF_MAX_WORKSPACE_BYTES, ctypes.byref(ws), 8
            ),
            "workspace preference",
        )
        results = (LtHeuristic * count)()
        got = ctypes.c_int(0)
        status = lib.cublasLtMatmulAlgoGetHeuristic(
            _handle(self.device),
            d["op"],
            d["a"],
            d["b"],
            d["c"],
            d["c"],
            pref,
            count,
            results,
            ctypes.byref(got),
        )
        lib.cublasLtMatmulPreferenceDestroy(pref)
        _check(status, "heuristic")
        return [(results[i].algo, results[i].workspace_size) for i in range(got.value)
                if results[i].state == 0]  # fmt: skip

    def run(self, x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, algo: LtAlgo,
            workspace: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """One product on the current stream (capturable: no host sync, no allocation)."""
        if x.shape != (self.rows, self.k) or w.shape != (self.n, self.k):
            raise ValueError(f"plan is {self.rows}x{self.k} @ {self.n}x{self.k}.T, "
                             f"got {tuple(x.shape)} @ {tuple(w.shape)}.T")  # fmt: skip
        if not (x.is_contiguous() and w.is_contiguous() and out.is_contiguous()):
            raise ValueError("cuBLASLt plan needs contiguous operands")
        lib, d = lt_library(), self._descs
        one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
        stream = torch.cuda.current_stream(x.device).cuda_stream
        _check(lib.cublasLtMatmul(
            _handle(self.device), d["op"], ctypes.byref(one), w.data_ptr(), d["a"],
            x.data_ptr(), d["b"], ctypes.byref(zero), out.data_ptr(), d["c"],
            out.data_ptr(), d["c"], ctypes.byref(algo), workspace.data_ptr(),
            workspace.numel() * workspace.element_size(), stream,
        ), "matmul")  # fmt: skip
        return out

    def close(self) -> None:
        lib = lt_library()
        if "op" in self._descs:
            lib.cublasLtMatmulDescDestroy(self._descs.pop("op"))
        for name in ("a", "b", "c"):
            if name in self._descs:
                lib.cublasLtMatrixLayoutDestroy(self._descs.pop(name))
