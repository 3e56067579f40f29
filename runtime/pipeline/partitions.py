"""Disjoint SM partitions as CUDA green contexts (driver API through cuda.bindings), one or
more streams each. On the CPU, or for a single whole-device partition with one stream, the
current stream; a single whole-device partition with several streams: plain CUDA streams."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch

from runtime.pipeline.plan import Partition, Plan, Unit


@dataclass
class GreenPartition:
    num_sms: int  # as granted by the driver (Hopper rounds up to multiples of 8)
    context: Any  # the CUgreenCtx; keeps the partition alive
    streams: list[torch.cuda.Stream] = field(default_factory=list)


def _ok(result: tuple[Any, ...]) -> tuple[Any, ...]:
    if int(result[0]) != 0:
        raise RuntimeError(f"CUDA driver error {result[0]}")
    return result[1:]


@cache
def green_partitions(sizes: tuple[int, ...]) -> tuple[GreenPartition, ...]:
    """Disjoint partitions of the current device: each size split off what remains; the last
    takes the rest of the device. Cached: green contexts live as long as the process."""
    from cuda.bindings import driver

    torch.cuda.init()
    (device,) = _ok(driver.cuDeviceGet(torch.cuda.current_device()))
    sm_type = driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM
    (rest,) = _ok(driver.cuDeviceGetDevResource(device, sm_type))
    groups = []
    for n in sizes[:-1]:
        got, _, rest = _ok(driver.cuDevSmResourceSplitByCount(1, rest, 0, n))
        groups.append(got[0])
    groups.append(rest)
    out = []
    flags = driver.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM
    for g in groups:
        (desc,) = _ok(driver.cuDevResourceGenerateDesc([g], 1))
        (ctx,) = _ok(driver.cuGreenCtxCreate(desc, device, flags))
        out.append(GreenPartition(int(g.sm.smCount), ctx))
    return tuple(out)


@cache
def plain_stream(device: torch.device, index: int) -> torch.cuda.Stream:
    """A device's ``index``-th plain stream, shared by the executors of every plan: the caching
    allocator keeps freed blocks per stream, so the CUDA graphs of several plans, captured one
    after another into one pool, reuse one another's memory only when they run on the same
    streams (one pair per plan ran an engine with three plans out of memory at capture)."""
    return torch.cuda.Stream(device)


def new_stream(part: GreenPartition) -> torch.cuda.Stream:
    from cuda.bindings import driver

    flags = driver.CUstream_flags.CU_STREAM_NON_BLOCKING
    (raw,) = _ok(driver.cuGreenCtxStreamCreate(part.context, flags, 0))
    return torch.cuda.get_stream_from_external(int(raw))


class Units:
    """Streams of a plan's execution units, and the SMs each may use."""

    def __init__(self, plan: Plan, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.single = plan.is_single_stream and len(plan.partitions) == 1
        self.streams: dict[Unit, torch.cuda.Stream | None] = {}
        self.sms: dict[int, int | None] = {}
        units = sorted({s.unit for s in plan.ops}, key=lambda u: (u.partition, u.stream))
        if not self.cuda or self.single:
            for u in units:  # None: whatever stream is current (a graph's capture stream too)
                self.streams[u] = None
                self.sms[u.partition] = None
            return
        parts = sorted(plan.partitions, key=lambda p: p.sm_start)
        device_sms = torch.cuda.get_device_properties(device).multi_processor_count
        if len(parts) == 1 and parts[0].num_sms >= device_sms:  # the whole device: plain streams
            for u in units:
                self.streams[u] = plain_stream(device, u.stream)
                self.sms[u.partition] = None
            return
        granted = green_partitions(tuple(p.num_sms for p in parts))
        by_id = {p.id: g for p, g in zip(parts, granted, strict=True)}
        for u in units:
            g = by_id[u.partition]
            while len(g.streams) <= u.stream:
                g.streams.append(new_stream(g))
            self.streams[u] = g.streams[u.stream]
            self.sms[u.partition] = g.num_sms

    def all_streams(self) -> list[torch.cuda.Stream]:
        seen: dict[int, torch.cuda.Stream] = {}
        for s in self.streams.values():
            if s is not None:
                seen[id(s)] = s
        return list(seen.values())


def describe(partitions: Sequence[Partition], units: Units) -> str:
    return ", ".join(f"partition {p.id}: {units.sms.get(p.id) or 'all'} SMs" for p in partitions)
