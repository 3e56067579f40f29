"""Streams confined to a fixed number of SMs through CUDA green contexts (driver API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class SmPartition:
    num_sms: int  # as granted by the driver (Hopper rounds up to multiples of 8)
    stream: torch.cuda.Stream
    handle: Any  # keeps the green context alive


def _driver_partition(num_sms: int) -> SmPartition:
    from cuda.bindings import driver

    def ok(result: tuple[Any, ...]) -> tuple[Any, ...]:
        assert int(result[0]) == 0, f"CUDA driver error {result[0]}"
        return result[1:]

    torch.cuda.init()
    (device,) = ok(driver.cuDeviceGet(torch.cuda.current_device()))
    (resource,) = ok(
        driver.cuDeviceGetDevResource(device, driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM)
    )
    groups, _, _rest = ok(driver.cuDevSmResourceSplitByCount(1, resource, 0, num_sms))
    (desc,) = ok(driver.cuDevResourceGenerateDesc([groups[0]], 1))
    flags = driver.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM
    (ctx,) = ok(driver.cuGreenCtxCreate(desc, device, flags))
    (raw,) = ok(driver.cuGreenCtxStreamCreate(ctx, driver.CUstream_flags.CU_STREAM_NON_BLOCKING, 0))
    stream = torch.cuda.get_stream_from_external(int(raw))
    return SmPartition(int(groups[0].sm.smCount), stream, ctx)


def _torch_partition(num_sms: int) -> SmPartition:
    from torch.cuda.green_contexts import GreenContext

    ctx: Any
    try:
        ctx = GreenContext.create(num_sms=num_sms, device_id=torch.cuda.current_device())
    except TypeError:  # torch 2.11 takes (num_sms, device_id) positionally
        ctx = GreenContext.create(num_sms, torch.cuda.current_device())  # type: ignore[arg-type, call-arg]
    return SmPartition(num_sms, ctx.Stream(), ctx)


def sm_partition(num_sms: int) -> tuple[SmPartition, str]:
    """A stream whose kernels run on (about) num_sms SMs; also says which API made it."""
    try:
        return _driver_partition(num_sms), "cuda.bindings driver green context"
    except Exception as exc:  # fall back to torch's wrapper
        first = repr(exc)
    try:
        return _torch_partition(num_sms), f"torch GreenContext (driver API failed: {first})"
    except Exception as exc:
        raise RuntimeError(f"no green context: driver {first}; torch {exc!r}") from exc
