"""The symmetric-memory all-reduce on two CUDA GPUs against NCCL's sum: eager and replayed from
a CUDA graph, below and above the crossover, bf16 and float32, NVLink multicast off."""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime.distributed.allreduce import MULTICAST_OFF

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs"),
]

HIDDEN = 1024
MAX_BYTES = 64 * HIDDEN * 2  # 64 bf16 rows (32 float32 rows): the crossover


def _rank(rank: int, store: str, errors: Any) -> None:
    try:
        os.environ.update(MULTICAST_OFF)
        import torch.distributed as dist

        from runtime.distributed.allreduce import group_all_reduce

        torch.cuda.set_device(rank)
        dev = torch.device("cuda", rank)
        dist.init_process_group("nccl", init_method=store, rank=rank, world_size=2)
        gen = torch.Generator(device=dev).manual_seed(1234 + rank)
        for dtype in (torch.bfloat16, torch.float32):
            op = group_all_reduce("symm_mem", None, dev, dtype, MAX_BYTES)
            assert op.symm is not None
            for rows in (1, 3, 17, 64, 65, 300):  # 65 and 300 rows of bf16: over, NCCL
                x = torch.randn(rows, HIDDEN, dtype=dtype, device=dev, generator=gen)
                want = x.clone()
                dist.all_reduce(want)
                assert op.symm.fits(x) == (x.numel() * x.element_size() <= MAX_BYTES)
                op(x)
                torch.testing.assert_close(x, want, atol=0, rtol=0)
            # captured once, replayed on fresh inputs: the graph's fixed buffer addresses
            static = torch.zeros(16, HIDDEN, dtype=dtype, device=dev)
            op(static)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                op(static)
                static.mul_(3)
                op(static)
            for _ in range(3):
                fresh = torch.randn(16, HIDDEN, dtype=dtype, device=dev, generator=gen)
                want = fresh.clone()
                dist.all_reduce(want)
                want.mul_(3)
                dist.all_reduce(want)
                static.copy_(fresh)
                graph.replay()
                torch.cuda.synchronize()
                torch.testing.assert_close(static, want, atol=0, rtol=0)
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        errors.put(f"rank {rank}:\n{traceback.format_exc()}")
        raise


def test_symmetric_memory_all_reduce_matches_nccl(tmp_path: Path) -> None:
    ctx = torch.multiprocessing.get_context("spawn")
    errors = ctx.SimpleQueue()
    store = f"file://{tmp_path / 'store'}"
    procs = [ctx.Process(target=_rank, args=(r, store, errors)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for p in procs:
        if p.is_alive():
            p.kill()
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    assert not messages, "\n".join(messages)
    assert [p.exitcode for p in procs] == [0, 0]
