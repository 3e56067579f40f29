"""Plan validation: every rule with a message that names the offending part."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence

from runtime.pipeline.plan import Partition, Plan, PlanError, Step, Unit

# a node of the unrolled pipeline: (layer, operation index, nano-batch)
Node = tuple[int, int, int]


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def data_deps(
    bounds: Sequence[Sequence[tuple[int, int]]], node: Node, num_layers: int | None = None
) -> list[Node]:
    """Nano-batches of the previous operation (the last one of the previous layer for the first)
    whose rows overlap this one's: its inputs, and the KV-cache writes attention reads after."""
    layer, i, k = node
    prev_layer, prev_op = (layer, i - 1) if i > 0 else (layer - 1, len(bounds) - 1)
    if prev_layer < 0:
        return []
    rows = bounds[i][k]
    return [(prev_layer, prev_op, j) for j, r in enumerate(bounds[prev_op]) if overlaps(r, rows)]


def validate(
    plan: Plan,
    op_names: Sequence[str],
    device_sms: int | None = None,
    network_ops: Collection[str] = (),
) -> None:
    """Raise PlanError unless the plan is valid for these operations (and this device);
    ``network_ops``: the layer's collectives (tensor parallelism), which have rules of their own."""
    _check_partitions(plan, device_sms)
    _check_ops(plan, op_names)
    _check_network(plan, network_ops)
    _check_order(plan, op_names)
    _check_acyclic(plan, op_names)
    _check_issue_order(plan, op_names)


def _check_partitions(plan: Plan, device_sms: int | None) -> None:
    if not plan.partitions:
        raise PlanError("the plan has no partitions")
    ids = [p.id for p in plan.partitions]
    if len(set(ids)) != len(ids):
        raise PlanError(f"duplicate partition ids: {ids}")
    limit = plan.device_sms if device_sms is None else device_sms
    for p in plan.partitions:
        if p.num_sms < 1 or p.sm_start < 0:
            raise PlanError(f"partition {p.id} needs sm_start >= 0 and num_sms >= 1")
        if p.sm_end > limit:
            raise PlanError(
                f"partition {p.id} uses SMs [{p.sm_start}, {p.sm_end}) but the device has "
                f"{limit} SMs"
            )
    ordered = sorted(plan.partitions, key=lambda p: p.sm_start)
    for a, b in itertools.pairwise(ordered):
        if a.sm_end > b.sm_start:
            raise PlanError(f"partitions {a.id} {_span(a)} and {b.id} {_span(b)} overlap")
    total = sum(p.num_sms for p in plan.partitions)
    if total > limit:
        raise PlanError(f"partitions use {total} SMs in all, the device has {limit}")


def _span(p: Partition) -> str:
    return f"[{p.sm_start}, {p.sm_end})"


def _check_ops(plan: Plan, op_names: Sequence[str]) -> None:
    if plan.batch_tokens < 1:
        raise PlanError("batch_tokens must be >= 1")
    names = [s.op for s in plan.ops]
    unknown = [n for n in names if n not in op_names]
    if unknown:
        raise PlanError(f"unknown operations {unknown}; the model has {list(op_names)}")
    missing = [n for n in op_names if n not in names]
    if missing or len(set(names)) != len(names):
        raise PlanError(f"every operation needs exactly one split; missing {missing}, got {names}")
    pids = {p.id for p in plan.partitions}
    for s in plan.ops:
        if not s.sizes or any(n < 1 for n in s.sizes):
            raise PlanError(f"{s.op}: nano-batch sizes must be >= 1, got {list(s.sizes)}")
        if sum(s.sizes) != plan.batch_tokens:
            raise PlanError(
                f"{s.op}: nano-batch sizes {list(s.sizes)} cover {sum(s.sizes)} tokens, "
                f"the batch has {plan.batch_tokens}"
            )
        if s.unit.partition not in pids or s.unit.stream < 0:
            raise PlanError(f"{s.op}: unknown partition {s.unit.partition} (have {sorted(pids)})")
        cap, part = s.unit.max_sms, plan.partition(s.unit.partition)
        if cap is not None and not 1 <= cap <= part.num_sms:
            raise PlanError(
                f"{s.op}: max_sms {cap} must be in [1, {part.num_sms}] (its partition's SMs)"
            )


def _check_network(plan: Plan, network_ops: Collection[str]) -> None:
    """Collectives share one unit that no other operation uses: one communicator runs its
    collectives in issue order anyway, its CTA cap (the unit's max_sms) is one per communicator,
    and a GEMM queued behind an all-reduce on its stream could not overlap it."""
    net = [s for s in plan.ops if s.op in network_ops]
    units = {s.unit for s in net}
    if len(units) > 1:
        names = ", ".join(f"{s.op} on {_unit(s.unit)}" for s in net)
        raise PlanError(f"the network operations must share one unit; got {names}")
    if not units or plan.is_single_stream:
        return  # no network stage (dense collectives, or a one-stream baseline)
    (unit,) = units
    shared = [s.op for s in plan.ops if s.unit == unit and s.op not in network_ops]
    if shared:
        raise PlanError(
            f"the network unit {_unit(unit)} is also given {shared}: collectives need a unit "
            "of their own to overlap with the GEMMs"
        )


def _unit(u: Unit) -> str:
    cap = "" if u.max_sms is None else f", max_sms {u.max_sms}"
    return f"(partition {u.partition}, stream {u.stream}{cap})"


def _check_order(plan: Plan, op_names: Sequence[str]) -> None:
    expected = {Step(s.op, k) for s in plan.ops for k in range(len(s.sizes))}
    seen: set[Step] = set()
    for step in plan.order:
        key = Step(step.op, step.nano_batch)
        if step.layer_shift not in (0, 1):
            raise PlanError(f"{step}: layer_shift must be 0 or 1")
        if key not in expected:
            raise PlanError(f"order names {key}, which no operation's split has")
        if key in seen:
            raise PlanError(f"order names {key} twice")
        seen.add(key)
    if missing := expected - seen:
        raise PlanError(f"order lacks steps {sorted(str(s) for s in missing)}")
    for a, b in plan.after:
        for s in (a, b):
            if Step(s.op, s.nano_batch) not in expected:
                raise PlanError(f"'after' names {s}, which no operation's split has")


def _edges(plan: Plan, op_names: Sequence[str]) -> dict[Node, list[Node]]:
    """Dependencies of every node of layer 1 (layer 0 provides the cross-layer edges)."""
    index = {n: i for i, n in enumerate(op_names)}
    bounds = [plan.split(n).bounds for n in op_names]
    deps: dict[Node, list[Node]] = {}
    for i, b in enumerate(bounds):
        for k in range(len(b)):
            deps[(1, i, k)] = data_deps(bounds, (1, i, k))
    for step, dep in plan.after:
        node = (1, index[step.op], step.nano_batch)
        deps[node].append((1, index[dep.op], dep.nano_batch))
    return deps


def _check_acyclic(plan: Plan, op_names: Sequence[str]) -> None:
    deps = _edges(plan, op_names)
    state: dict[Node, int] = {}  # 1: on the DFS stack, 2: done

    def visit(node: Node, path: list[Node]) -> None:
        state[node] = 1
        for d in deps.get(node, []):
            if state.get(d) == 1:
                cycle = [*path[path.index(d) :], d] if d in path else [node, d]
                names = " -> ".join(f"{op_names[i]}#{k}" for _, i, k in cycle)
                raise PlanError(f"dependency cycle: {names}")
            if d in deps and state.get(d) != 2:
                visit(d, [*path, d])
        state[node] = 2

    for node in deps:
        if node not in state:
            visit(node, [node])


def issue_sequence(plan: Plan, op_names: Sequence[str], num_layers: int) -> list[Node]:
    """The unrolled issue order over ``num_layers`` layers (rounds -1 .. num_layers - 1)."""
    index = {n: i for i, n in enumerate(op_names)}
    seq = []
    for r in range(-1, num_layers):
        for step in plan.order:
            layer = r + step.layer_shift
            if 0 <= layer < num_layers:
                seq.append((layer, index[step.op], step.nano_batch))
    return seq


def _check_issue_order(plan: Plan, op_names: Sequence[str]) -> None:
    """Streams wait on events already recorded, so every step must be issued after its deps."""
    bounds = [plan.split(n).bounds for n in op_names]
    index = {n: i for i, n in enumerate(op_names)}
    extra: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for step, dep in plan.after:
        extra.setdefault((index[step.op], step.nano_batch), []).append(
            (index[dep.op], dep.nano_batch)
        )
    issued: set[Node] = set()
    for node in issue_sequence(plan, op_names, 3):
        layer, i, k = node
        deps = data_deps(bounds, node) + [(layer, j, m) for j, m in extra.get((i, k), [])]
        for d in deps:
            if d not in issued:
                raise PlanError(
                    f"order issues {op_names[i]}#{k} (layer {layer}) before its dependency "
                    f"{op_names[d[1]]}#{d[2]} (layer {d[0]})"
                )
        issued.add(node)
