"""bench/l2_prefetch_probe.py's read-into-L2 kernel reads exactly the first bytes it is asked
to (the sum it keeps per program covers them and nothing past them), on fresh random weights."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from tests.kernels.triton_env import DEVICE, needs_triton_device, randn

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]


def _probe():  # type: ignore[no-untyped-def]
    path = ROOT / "bench/l2_prefetch_probe.py"
    spec = importlib.util.spec_from_file_location("l2_prefetch_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["l2_prefetch_probe"] = module
    spec.loader.exec_module(module)
    return module


@needs_triton_device
@pytest.mark.parametrize("nbytes", [2, 40_000, 1 << 30], ids=["one", "part", "past-the-end"])
def test_the_touch_kernel_reads_the_first_bytes(nbytes: int) -> None:
    probe = _probe()
    w = randn(48, 1000, dtype=torch.bfloat16, seed=nbytes % 97)
    out = torch.full((64,), float("nan"), device=DEVICE)
    probe.prefetch(probe.touch_kernel(), w, nbytes, out)
    n = min(w.numel(), nbytes // 2)
    programs = -(-n // (probe.BLOCK * probe.ITERS))
    want = w.reshape(-1)[:n].float().sum()
    torch.testing.assert_close(out[:programs].sum().cpu(), want.cpu(), rtol=1e-4, atol=1e-3)
    assert torch.isnan(out[programs:]).all()  # no program past the grid
