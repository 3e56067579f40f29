"""Tensor parallelism's own all-reduce chosen by size (``runtime.distributed.allreduce``) on the
CPU: the dispatch between a symmetric-memory path and the process group, and the clear errors of
a symmetric-memory request where it cannot run. The symmetric-memory path itself needs two GPUs:
tests/runtime/distributed/test_gpu_allreduce.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from runtime import LLM
from runtime.config import EngineConfig
from runtime.distributed.allreduce import GroupAllReduce, SymmMemAllReduce, group_all_reduce
from runtime.distributed.tensor_parallel import TPLayout


class _Recorder:
    """Stands in for the symmetric-memory path: takes tensors of up to ``max_bytes``, doubles
    them (so a call is visible in the values) and records their shapes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.calls = max_bytes, list[tuple[int, ...]]()

    def fits(self, t: torch.Tensor) -> bool:
        return 0 < t.numel() * t.element_size() <= self.max_bytes

    def __call__(self, t: torch.Tensor) -> None:
        self.calls.append(tuple(t.shape))
        t.mul_(2)


@pytest.fixture
def one_rank(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_tensors_up_to_the_crossover_take_the_symmetric_path_and_larger_ones_the_group(
    one_rank: None,
) -> None:
    symm = _Recorder(max_bytes=4 * 64 * 4)  # 4 rows of 64 float32
    op = GroupAllReduce(None, symm)
    small, large = torch.ones(4, 64), torch.ones(5, 64)
    assert op(small) is small and op(large) is large
    assert symm.calls == [(4, 64)]
    assert torch.equal(small, torch.full((4, 64), 2.0))  # through the recorder
    assert torch.equal(large, torch.ones(5, 64))  # gloo's sum over one rank: unchanged
    # the layer's all-reduce goes through the layout's
    layout = TPLayout.current(allreduce=op)
    layout.all_reduce(torch.ones(2, 64))
    assert symm.calls == [(4, 64), (2, 64)]
    assert "symm_mem" in op.describe() and GroupAllReduce().describe() == "nccl"


def test_a_symmetric_memory_request_off_the_gpu_is_a_clear_error(
    one_rank: None, tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = torch.device("cpu")
    assert group_all_reduce("nccl", None, cpu, torch.float32, 1 << 20).symm is None
    with pytest.raises(ValueError, match="needs CUDA"):
        group_all_reduce("symm_mem", None, cpu, torch.float32, 1 << 20)
    with pytest.raises(ValueError, match="allreduce must be one of nccl, symm_mem"):
        group_all_reduce("nvls", None, cpu, torch.float32, 1 << 20)
    monkeypatch.delenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", raising=False)
    with pytest.raises(RuntimeError, match="TORCH_SYMM_MEM_DISABLE_MULTICAST=1"):
        SymmMemAllReduce(None, cpu, torch.float32, 1 << 20)  # multicast must be off first
    # the engine refuses before any worker process starts
    with pytest.raises(ValueError, match=r"allreduce='symm_mem' needs CUDA GPUs"):
        LLM(tiny_llama, device="cpu", tensor_parallel_size=2, allreduce="symm_mem")


def test_the_allreduce_options_are_validated() -> None:
    assert EngineConfig().allreduce == "nccl"  # the tested path stays the default
    with pytest.raises(ValueError, match="allreduce must be one of nccl, symm_mem"):
        EngineConfig(allreduce="nvls")
    with pytest.raises(ValueError, match="symm_mem_max_bytes must be positive"):
        EngineConfig(symm_mem_max_bytes=0)


class _FakeSymmOps:
    """Stands in for ``torch.ops.symm_mem`` on one CPU "rank" of a group of two equal ranks: a
    sum over the group doubles the buffer's rows. Records which form ran."""

    def __init__(self, with_out: bool) -> None:
        self.calls: list[str] = []
        if with_out:
            self.two_shot_all_reduce_out = self._out

    def _out(self, buf: torch.Tensor, op: str, group: str, out: torch.Tensor) -> torch.Tensor:
        self.calls.append("out")
        buf.mul_(2)  # the real kernel leaves its sum in the buffer too
        return out.copy_(buf)

    def two_shot_all_reduce_(self, buf: torch.Tensor, op: str, group: str) -> torch.Tensor:
        self.calls.append("in_place")
        return buf.mul_(2)


@pytest.mark.parametrize("with_out", [True, False])
def test_the_symmetric_sum_lands_in_the_tensor_with_either_operator_form(
    with_out: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``_out`` form writes the sum straight into the tensor; without it (older builds) the
    sum is made in the buffer and copied out. Either way only the tensor's rows of the buffer
    are touched and the tensor ends up holding the group's sum."""
    fake = _FakeSymmOps(with_out)
    monkeypatch.setattr(torch.ops, "symm_mem", fake, raising=False)
    op = SymmMemAllReduce.__new__(SymmMemAllReduce)
    op.group_name, op.buffer = "g", torch.full((64,), -1.0)
    op.max_bytes, op.write_out = 256, hasattr(fake, "two_shot_all_reduce_out")
    t = torch.arange(12.0).view(3, 4)
    expected = t * 2
    assert op.fits(t)
    op(t)
    assert torch.equal(t, expected)
    assert fake.calls == ["out" if with_out else "in_place"]
    assert torch.equal(op.buffer[12:], torch.full((52,), -1.0))
    described = GroupAllReduce(None, op).describe()
    assert described.startswith("symm_mem two-shot") and ("written out" in described) == with_out
