"""A solved schedule as a runtime pipeline plan (runtime/pipeline's format), validated."""

from __future__ import annotations

from runtime.pipeline.plan import OpSplit, Partition, Plan, Step, Unit
from runtime.pipeline.validate import validate
from runtime.tune.costs import Costs
from runtime.tune.schedule import Schedule


def to_plan(name: str, schedule: Schedule, costs: Costs) -> Plan:
    """Attention on its own unit (a second stream of the whole device, with or without a grid
    cap, or a green context of the chosen SMs), everything else on unit 0 (in a carve layout
    both units capped: attention's grid sized to its SMs, the GEMMs aimed at the rest); one split
    for every operation; the round's order is the schedule's start order, each segment's
    operations one after another."""
    sms = costs.profile.device_sms
    n = schedule.layout.attention_sms
    if n is None:
        partitions: tuple[Partition, ...] = (Partition(0, 0, sms),)
        att_unit = Unit(0, 1, schedule.layout.attention_cap)
        other_unit = Unit(0, 0, schedule.layout.other_cap)
    else:
        partitions = (Partition(0, n, sms - n), Partition(1, 0, n))
        att_unit, other_unit = Unit(1, 0), Unit(0, 0)
    sizes = tuple(b - a for a, b in schedule.bounds)
    op_names = [op for op, _ in costs.profile.ops]
    attention = costs.profile.attention
    ops = tuple(OpSplit(op, sizes, att_unit if op == attention else other_unit) for op in op_names)
    order = tuple(
        Step(op, k, schedule.shift[k, seg])
        for k, seg in schedule.issue_order()
        for op in costs.ops[seg]
    )
    plan = Plan(name, sum(sizes), sms, partitions, ops, order)
    validate(plan, op_names, sms)
    return plan
