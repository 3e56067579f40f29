"""The cuBLASLt linear: its table, its fallbacks, and (on a GPU) every heuristic candidate against
torch's linear, eager and captured in a CUDA graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kernels import cublaslt, cublaslt_backend
from kernels.cublaslt_backend import Entry, parse_table
from kernels.registry import get_ops, implementations

needs_lt = pytest.mark.skipif(not cublaslt.available(), reason="needs a CUDA GPU and cuBLASLt")


def _entry(**over: object) -> dict[str, object]:
    e: dict[str, object] = {"device": "GPU", "version": 130100, "rows": 16, "n": 64, "k": 32,
                            "dtype_bytes": 2, "algo": list(range(8)), "speedup": 1.1}  # fmt: skip
    return {**e, **over}


def test_the_table_is_read_by_shape() -> None:
    table = parse_table({"entries": [_entry(), _entry(rows=32, speedup=1.05)]})
    assert table[("GPU", 130100, 16, 64, 32, 2)] == Entry(tuple(range(8)), 1.1)
    assert table[("GPU", 130100, 32, 64, 32, 2)].speedup == 1.05
    assert len(table) == 2


@pytest.mark.parametrize(
    "bad",
    [{}, {"entries": [_entry(algo=[1, 2])]}, {"entries": [_entry(rows="x")]},
     {"entries": [{"device": "GPU"}]}],
)  # fmt: skip
def test_a_malformed_table_is_refused(bad: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a cuBLASLt algorithm table"):
        parse_table(bad)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=str(path)):
        cublaslt_backend._table.__wrapped__(path)


def test_the_shipped_table_parses() -> None:
    assert isinstance(cublaslt_backend._table.__wrapped__(cublaslt_backend.TABLE), dict)


def test_cpu_tensors_take_torchs_linear() -> None:
    x, w = torch.randn(3, 8), torch.randn(5, 8)
    b = torch.randn(5)
    assert torch.equal(cublaslt_backend.linear(x, w), F.linear(x, w))
    assert torch.equal(cublaslt_backend.linear(x, w, b), F.linear(x, w, b))
    out = torch.full((3, 5), float("nan"))
    assert cublaslt_backend.linear(x, w, out=out) is out
    torch.testing.assert_close(out, F.linear(x, w))


def test_the_backend_is_opt_in_and_absent_on_the_cpu() -> None:
    assert not cublaslt_backend.available(torch.device("cpu"))
    assert "cublaslt" in implementations("linear")
    assert get_ops("cpu").backends["linear"] == "torch"
    with pytest.raises(ValueError, match="cublaslt"):
        get_ops("cpu").with_backend("linear", "cublaslt", "cpu")


@needs_lt
@pytest.mark.gpu
@pytest.mark.parametrize("rows,n,k", [(1, 256, 128), (16, 6144, 4096), (176, 4096, 4096)])
def test_every_candidate_matches_torch_eager_and_captured(rows: int, n: int, k: int) -> None:
    gen = torch.Generator(device="cuda").manual_seed(rows * 7 + n)
    x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen) * k**-0.5
    ref = (x.float() @ w.float().T).to(torch.bfloat16)
    plan = cublaslt.LtPlan(n, k, rows, torch.bfloat16)
    workspace = torch.empty(cublaslt_backend.WORKSPACE_BYTES, device="cuda", dtype=torch.uint8)
    cands = plan.candidates(cublaslt_backend.WORKSPACE_BYTES, cublaslt_backend.CANDIDATES)
    assert cands, "the heuristic offered nothing"
    for algo, _ in cands:
        out = torch.full((rows, n), float("nan"), device="cuda", dtype=torch.bfloat16)
        plan.run(x, w, out, algo, workspace)
        torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)
    algo = cands[-1][0]
    out = torch.zeros((rows, n), device="cuda", dtype=torch.bfloat16)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        plan.run(x, w, out, algo, workspace)
    x.copy_(torch.randn(rows, k, device="cuda", dtype=torch.bfloat16, generator=gen))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, (x.float() @ w.float().T).to(torch.bfloat16), atol=2e-2,
                               rtol=2e-2)  # fmt: skip
    with pytest.raises(ValueError, match="plan is"):
        plan.run(x[:, :-8], w, out, algo, workspace)
    plan.close()


@needs_lt
@pytest.mark.gpu
def test_a_listed_shape_runs_its_recorded_algorithm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, n, k = 48, 4096, 4096
    plan = cublaslt.LtPlan(n, k, rows, torch.bfloat16)
    cands = plan.candidates(cublaslt_backend.WORKSPACE_BYTES, cublaslt_backend.CANDIDATES)
    chosen = cands[-1][0]
    path = tmp_path / "algos.json"
    entry = _entry(device=torch.cuda.get_device_name(0), version=cublaslt.version(), rows=rows,
                   n=n, k=k, algo=[int(v) for v in chosen.data])  # fmt: skip
    path.write_text(json.dumps({"entries": [entry]}))
    monkeypatch.setattr(cublaslt_backend, "TABLE", path)
    cublaslt_backend._table.cache_clear()
    cublaslt_backend._plan.cache_clear()
    monkeypatch.setattr(cublaslt_backend, "_table", lambda: cublaslt_backend.parse_table(
        json.loads(path.read_text())))  # fmt: skip
    found = cublaslt_backend._plan(0, rows, n, k, torch.bfloat16)
    assert found is not None and tuple(found[1].data) == tuple(chosen.data)
    assert cublaslt_backend._plan(0, rows + 1, n, k, torch.bfloat16) is None  # not listed
    x = torch.randn(2, rows // 2, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5
    out = cublaslt_backend.linear(x, w)
    assert out.shape == (2, rows // 2, n)
    torch.testing.assert_close(out, F.linear(x, w), atol=2e-2, rtol=2e-2)
    flat = torch.randn(rows * k + 1, device="cuda", dtype=torch.bfloat16)
    shifted = flat[1:].view(rows, k)  # 2 bytes past an aligned address: copied first
    torch.testing.assert_close(cublaslt_backend.linear(shifted, w), F.linear(shifted, w),
                               atol=2e-2, rtol=2e-2)  # fmt: skip
    # into a given output: an aligned one is written in place (bit for bit the same algorithm's
    # result), a misaligned one through a copy
    given = torch.full((2, rows // 2, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    assert cublaslt_backend.linear(x, w, out=given) is given and torch.equal(given, out)
    wide = torch.full((rows * n + 1,), float("nan"), device="cuda", dtype=torch.bfloat16)
    off = wide[1:].view(rows, n)
    assert cublaslt_backend.linear(x.view(rows, k), w, out=off) is off
    assert torch.equal(off, out.view(rows, n))
    cublaslt_backend._plan.cache_clear()


@needs_lt
@pytest.mark.gpu
def test_a_refused_launch_falls_back_to_torch_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        calls = 0

        def run(self, *args: object) -> None:
            Refusing.calls += 1
            raise RuntimeError("cuBLASLt matmul failed with status 15")

    monkeypatch.setattr(cublaslt_backend, "_plan", lambda *key: (Refusing(), None))
    monkeypatch.setattr(cublaslt_backend, "_REFUSED", set())
    x = torch.randn(8, 256, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(128, 256, device="cuda", dtype=torch.bfloat16)
    for _ in range(2):
        torch.testing.assert_close(cublaslt_backend.linear(x, w), F.linear(x, w))
    assert Refusing.calls == 1  # the second call went straight to torch's linear


def test_the_sm_aimed_linear_is_torchs_on_the_cpu() -> None:
    x, w = torch.randn(3, 8), torch.randn(5, 8)
    assert torch.equal(cublaslt_backend.on_sms(16)(x, w), F.linear(x, w))
    out = torch.full((3, 5), float("nan"))
    assert cublaslt_backend.linear_on_sms(x, w, out=out, num_sms=16) is out
    torch.testing.assert_close(out, F.linear(x, w))


@needs_lt
@pytest.mark.gpu
@pytest.mark.parametrize("rows,sms", [(16, 116), (1000, 116), (5000, 64), (5000, 120)])
def test_the_sm_aimed_linear_matches_torch_eager_and_captured(rows: int, sms: int) -> None:
    """cuBLASLt with an SM count target (the GEMMs of a carve layout, any row count) against
    torch's linear on fresh random inputs, eager and in a CUDA graph; it really is cuBLASLt's
    (a plan exists for the shape), not the fallback."""
    n, k = 6144, 4096
    gen = torch.Generator(device="cuda").manual_seed(rows + sms)
    x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen) * k**-0.5
    assert cublaslt_backend._plan_on_sms(0, rows, n, k, torch.bfloat16, sms) is not None
    linear = cublaslt_backend.on_sms(sms)
    torch.testing.assert_close(linear(x, w), F.linear(x, w), atol=2e-2, rtol=2e-2)
    out = torch.zeros((rows, n), device="cuda", dtype=torch.bfloat16)
    linear(x, w, out=out)  # the first call builds the plan outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        linear(x, w, out=out)
    x.copy_(torch.randn(rows, k, device="cuda", dtype=torch.bfloat16, generator=gen))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, F.linear(x, w), atol=2e-2, rtol=2e-2)
