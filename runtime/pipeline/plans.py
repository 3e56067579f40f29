"""Building plans: the layout of the Llama layer, the shipped defaults, and a plan per batch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from runtime.pipeline.plan import OpSplit, Partition, Plan, PlanError, Step, Unit
from runtime.pipeline.planset import LEGACY_KV_DTYPE, PlanSet, is_plan_set

PLAN_DIR = Path(__file__).parent / "plans"
SEARCHED_DIR = PLAN_DIR / "searched"  # plan sets from `nanolang tune`, one directory each
# the Llama decoder's operations (runtime.model.llama.DecoderLayer.operations)
LLAMA_OPS = ("input_norm", "qkv_proj", "rope", "store_kv", "attention",
             "o_proj", "post_attn_norm", "gate_up_proj", "act", "down_proj")  # fmt: skip
# the tensor-parallel layer's (runtime.distributed.tensor_parallel.TPDecoderLayer): an all-reduce
# of its own after each row-parallel GEMM
NETWORK_OPS = ("o_allreduce", "down_allreduce")
TP_LLAMA_OPS = ("input_norm", "qkv_proj", "rope", "store_kv", "attention", "o_proj",
                "o_allreduce", "post_attn_norm", "gate_up_proj", "act", "down_proj",
                "down_allreduce")  # fmt: skip
# operations of a nano-batch that run after its attention, in the same layer; the rest of the
# layer (norm, QKV, rope, KV store) of the next layer is issued right after them (layer_shift 1)
AFTER_ATTENTION = ("o_proj", "post_attn_norm", "gate_up_proj", "act", "down_proj")


def two_partition_plan(
    name: str,
    sizes: Sequence[int],
    attention_sms: int,
    device_sms: int = 132,
    ops: Sequence[str] = LLAMA_OPS,
) -> Plan:
    """NanoFlow's shape for one GPU: attention on partition 1 (the first ``attention_sms`` SMs,
    a multiple of 8 on Hopper), GEMMs and small ops on partition 0 (the rest). In each round,
    nano-batch k runs its attention, then its O / MLP GEMMs, then the next layer's norm / QKV /
    rope / KV store, so that the attention of nano-batch k+1 overlaps the GEMMs of nano-batch k."""
    gemm = Partition(0, attention_sms, device_sms - attention_sms)
    attn = Partition(1, 0, attention_sms)
    splits = tuple(OpSplit(op, tuple(sizes), Unit(1 if op == "attention" else 0)) for op in ops)
    before = [op for op in ops if op not in AFTER_ATTENTION and op != "attention"]
    order: list[Step] = []
    for k in range(len(sizes)):
        order.append(Step("attention", k))
        order += [Step(op, k) for op in AFTER_ATTENTION]
        order += [Step(op, k, layer_shift=1) for op in before]
    return Plan(name, sum(sizes), device_sms, (gemm, attn), splits, tuple(order))


def two_stream_plan(
    name: str, sizes: Sequence[int], device_sms: int = 132, ops: Sequence[str] = LLAMA_OPS
) -> Plan:
    """The same order on one whole-device partition with attention on a second stream: overlap
    without SM partitioning (the hardware scheduler shares SMs between the two)."""
    return _one_partition(name, sizes, device_sms, ops, None)


def carve_plan(
    name: str,
    sizes: Sequence[int],
    attention_sms: int,
    device_sms: int = 132,
    ops: Sequence[str] = LLAMA_OPS,
) -> Plan:
    """The same order on one whole-device partition without green contexts: attention on a
    second stream with its grid sized to ``attention_sms``, the other operations on the first
    with their GEMMs aimed at the rest (cuBLASLt's SM count target; the search's carve:N). Both
    units carry their caps (``max_sms``)."""
    if not 0 < attention_sms < device_sms:
        raise PlanError(f"a carve plan's attention_sms must be in [1, {device_sms - 1}] "
                        f"(the device has {device_sms} SMs), got {attention_sms}")  # fmt: skip
    return _one_partition(name, sizes, device_sms, ops, attention_sms)


def _one_partition(
    name: str, sizes: Sequence[int], device_sms: int, ops: Sequence[str], attention_sms: int | None
) -> Plan:
    """two_partition_plan's order on one whole-device partition: attention on stream 1, the rest
    on stream 0; ``attention_sms`` caps both (attention at it, the rest at the other SMs)."""
    base = two_partition_plan(name, sizes, 8, device_sms, ops)
    rest_sms = None if attention_sms is None else device_sms - attention_sms
    att, rest = Unit(0, 1, attention_sms), Unit(0, 0, rest_sms)
    splits = tuple(OpSplit(s.op, s.sizes, att if s.op == "attention" else rest) for s in base.ops)
    return Plan(name, base.batch_tokens, device_sms, (Partition(0, 0, device_sms),), splits,
                base.order)  # fmt: skip


def network_plan(
    name: str,
    sizes: Sequence[int],
    network_ctas: int | None = None,
    device_sms: int = 132,
    ops: Sequence[str] = TP_LLAMA_OPS,
    network: Sequence[str] = NETWORK_OPS,
) -> Plan:
    """NanoFlow's network stage on one rank of a tensor-parallel group: every compute operation
    on stream 0 of the whole device, the all-reduces on stream 1 (``network_ctas``: their CTA
    cap, as that unit's ``max_sms``). The layer is cut after each all-reduce; in each piece every
    nano-batch runs its operations and then its all-reduce, so the all-reduce of nano-batch k
    runs while nano-batch k + 1 computes (and the last one's while the first one starts the
    next piece)."""
    if len(sizes) < 2:
        raise PlanError("a network stage needs at least two nano-batches")
    whole = Partition(0, 0, device_sms)
    compute, net = Unit(0, 0), Unit(0, 1, network_ctas)
    splits = tuple(OpSplit(op, tuple(sizes), net if op in network else compute) for op in ops)
    pieces: list[list[str]] = [[]]
    for op in ops:
        pieces[-1].append(op)
        if op in network:
            pieces.append([])
    order = [Step(op, k) for piece in pieces for k in range(len(sizes)) for op in piece]
    return Plan(name, sum(sizes), device_sms, (whole,), splits, tuple(order))


def default_plans() -> dict[str, Plan]:
    """The shipped plans by workload class: 'decode' and 'prefill'."""
    return {c: Plan.load(PLAN_DIR / f"llama-3-8b-h200-{c}.json") for c in ("decode", "prefill")}


def load_plans(spec: str) -> dict[str, Plan]:
    """'default' (the shipped plans), a plan JSON path, or either with ':sequential' (the same
    splits on one stream)."""
    base, _, variant = spec.partition(":")
    if variant not in ("", "sequential"):
        raise ValueError(f"unknown plan variant {variant!r} in {spec!r}; use ':sequential'")
    plans = default_plans() if base == "default" else {"decode": Plan.load(base)}
    if "prefill" not in plans:
        plans["prefill"] = plans["decode"]
    if variant == "sequential":
        plans = {k: p.sequential() for k, p in plans.items()}
    return plans


def searched_plan_set(
    signature: dict[str, int],
    device: str,
    directory: Path = SEARCHED_DIR,
    kv_dtype: str = LEGACY_KV_DTYPE,
) -> PlanSet | None:
    """The searched plan set for this model (by layer sizes), device and KV cache dtype (a
    torch dtype name), if one is shipped."""
    for path in sorted(directory.glob("*/planset.json")):
        d = json.loads(path.read_text())
        if (is_plan_set(d) and d.get("signature") == signature and d.get("device") == device
                and d.get("kv_cache_dtype", LEGACY_KV_DTYPE) == kv_dtype):  # fmt: skip
            return PlanSet.load(path)
    return None


def load_pipeline(
    spec: str,
    signature: dict[str, int] | None = None,
    device: str = "",
    kv_dtype: str = LEGACY_KV_DTYPE,
) -> PlanSet | dict[str, Plan]:
    """What ``EngineConfig.pipeline`` names: 'default' (the searched plan set for this model,
    device and KV cache dtype when one exists, else the hand-picked plans by workload class), a
    plan JSON or a plan-set JSON; any of them with ':sequential' (the same nano-batches on one
    stream)."""
    base, _, variant = spec.partition(":")
    if variant not in ("", "sequential"):
        raise ValueError(f"unknown plan variant {variant!r} in {spec!r}; use ':sequential'")
    found: PlanSet | None = None
    if base == "default":
        if signature is not None:
            found = searched_plan_set(signature, device, kv_dtype=kv_dtype)
    elif _is_plan_set_file(base):
        found = PlanSet.load(base)
    if found is None:
        return load_plans(spec)
    if variant == "sequential":
        plans = {name: p.sequential() for name, p in found.plans.items()}
        found = replace(found, plans=plans)
    return found


def _is_plan_set_file(path: str) -> bool:
    try:
        return is_plan_set(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError(f"cannot read pipeline plan {path}: {exc}") from exc


def workload_class(num_tokens: int, num_decode_seqs: int) -> str:
    """'decode' when decode tokens are at least half of the batch, else 'prefill'."""
    return "decode" if 2 * num_decode_seqs >= num_tokens else "prefill"
