"""All-reduce latency on two GPUs: NCCL against PyTorch's symmetric-memory all-reduces over NVLink
peer memory (``one_shot_all_reduce``, ``two_shot_all_reduce_``), with NVLink multicast off.

    python bench/symm_mem_allreduce.py --out symm.json [--rows 1,8,32,128,512,1024,2048]

One process per GPU (spawned here), bf16 rows of ``--hidden`` (8,192: Llama-3-70B). Each op runs
``--iters`` times back to back between two CUDA events after a warm-up; the symmetric-memory ops
read a buffer registered once (``rendezvous``), as an engine would keep one, so the copy into it is
timed as a separate column. Results are checked against NCCL's sum. The multicast variables are set
before torch is imported, and the run stops if the rendezvous reports a multicast address anyway.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                 "NVSHMEM_DISABLE_NVLS": "1"}  # fmt: skip


def _time_us(fn: Any, iters: int) -> float:
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000.0 / iters


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, out: Any) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed._symmetric_memory as symm_mem

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, device_id=torch.device("cuda", rank))  # fmt: skip
    group = dist.group.WORLD
    assert group is not None
    name = group.group_name
    rows = [int(r) for r in args.rows.split(",")]
    dev = torch.device("cuda", rank)
    buf = symm_mem.empty(max(rows) * args.hidden, dtype=torch.bfloat16, device=dev)
    handle = symm_mem.rendezvous(buf, name)
    if getattr(handle, "multicast_ptr", 0):
        raise SystemExit("the rendezvous made a multicast address: stopping")
    results: dict[str, Any] = {}
    gen = torch.Generator(device=f"cuda:{rank}").manual_seed(rank)
    for n in rows:
        x = torch.randn(n, args.hidden, dtype=torch.bfloat16, device=f"cuda:{rank}",
                        generator=gen)  # fmt: skip
        want = x.clone()
        dist.all_reduce(want)
        view = buf[: n * args.hidden]
        row: dict[str, Any] = {"bytes": x.numel() * 2}
        y = x.clone()
        row["nccl_us"] = round(_time_us(lambda y=y: dist.all_reduce(y), args.iters), 2)
        row["copy_in_us"] = round(_time_us(lambda v=view, x=x: v.copy_(x.view(-1)), args.iters), 2)
        for op in ("one_shot", "two_shot"):
            try:
                if op == "one_shot":
                    view.copy_(x.view(-1))
                    got = torch.ops.symm_mem.one_shot_all_reduce(view, "sum", name)
                    fn = lambda v=view: torch.ops.symm_mem.one_shot_all_reduce(v, "sum", name)  # noqa: E731
                else:
                    view.copy_(x.view(-1))
                    torch.ops.symm_mem.two_shot_all_reduce_(view, "sum", name)
                    got = view.clone()
                    fn = lambda v=view: torch.ops.symm_mem.two_shot_all_reduce_(v, "sum", name)  # noqa: E731
                torch.cuda.synchronize()
                err = (got.view_as(want).float() - want.float()).abs().max().item()
                row[f"{op}_max_abs_err"] = err
                row[f"{op}_us"] = round(_time_us(fn, args.iters), 2)
            except Exception as exc:  # an op this torch lacks or refuses: recorded, not fatal
                row[f"{op}_error"] = repr(exc)[:300]
        results[str(n)] = row
        if rank == 0:
            print(f"rows {n}: {row}", flush=True)
    if rank == 0:
        out.put(results)
    dist.barrier()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1,8,32,64,128,256,512,1024,2048")
    ap.add_argument("--hidden", type=int, default=8192)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--port", type=int, default=29517)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    os.environ.update(MULTICAST_OFF)
    import torch
    import torch.multiprocessing as mp

    if torch.cuda.device_count() < 2:
        print("needs two GPUs", file=sys.stderr)
        return 2
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=_rank, args=(r, 2, args.port, args, queue)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs) or queue.empty():
        print(f"a rank failed: exit codes {[p.exitcode for p in procs]}", file=sys.stderr)
        return 1
    doc = {
        "command": "python bench/symm_mem_allreduce.py " + " ".join(sys.argv[1:]),
        "device": " + ".join(torch.cuda.get_device_name(i) for i in range(2)),
        "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())), "env": MULTICAST_OFF,
        "hidden": args.hidden, "iters": args.iters, "results": queue.get(),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
