"""A NanoFlow pipeline plan: plain frozen data, JSON round-trip.

A plan describes one decoder layer; the executor applies it to every layer. For each model
operation it gives the split of the dense batch into nano-batches (token counts at the plan's
reference ``batch_tokens``; scaled to the real batch and snapped to sequence boundaries at run
time) and the execution unit (an SM partition and a stream in it). ``order`` is the issue order of
(operation, nano-batch) steps within one round; a step with ``layer_shift`` 1 belongs to the next
layer but is issued in this round, which lets one nano-batch's QKV of layer L+1 run while the
other nano-batch's attention of layer L does. ``after`` adds dependencies beyond the data ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Partition:
    """SMs [sm_start, sm_start + num_sms) of the device."""

    id: int
    sm_start: int
    num_sms: int

    @property
    def sm_end(self) -> int:
        return self.sm_start + self.num_sms


@dataclass(frozen=True)
class Unit:
    """Where an operation runs: a partition and one of its streams; ``max_sms`` caps the grid of
    kernels that size it to an SM budget (decode attention) below the partition's SMs, which
    confines them without a partition (NanoFlow's CTA-capped kernels on plain streams)."""

    partition: int
    stream: int = 0
    max_sms: int | None = None


@dataclass(frozen=True)
class OpSplit:
    """One operation: its nano-batch sizes (tokens at the plan's batch_tokens) and its unit."""

    op: str
    sizes: tuple[int, ...]
    unit: Unit

    @property
    def bounds(self) -> tuple[tuple[int, int], ...]:
        """Row ranges [start, end) of the nano-batches at the reference batch."""
        out, start = [], 0
        for s in self.sizes:
            out.append((start, start + s))
            start += s
        return tuple(out)


@dataclass(frozen=True)
class Step:
    """Run nano-batch ``nano_batch`` of ``op``; layer_shift 1: of the next layer."""

    op: str
    nano_batch: int
    layer_shift: int = 0

    def __str__(self) -> str:
        shift = "(next layer)" if self.layer_shift else ""
        return f"{self.op}#{self.nano_batch}{shift}"


@dataclass(frozen=True)
class Plan:
    name: str
    batch_tokens: int  # the reference dense batch the sizes add up to
    device_sms: int  # SMs of the device the plan was written for
    partitions: tuple[Partition, ...]
    ops: tuple[OpSplit, ...]
    order: tuple[Step, ...]
    after: tuple[tuple[Step, Step], ...] = ()  # (step, dependency) pairs, same layer

    def split(self, op: str) -> OpSplit:
        return next(s for s in self.ops if s.op == op)

    def partition(self, pid: int) -> Partition:
        return next(p for p in self.partitions if p.id == pid)

    def sequential(self) -> Plan:
        """The baseline: same splits and order, one stream on all SMs."""
        whole = Partition(0, 0, self.device_sms)
        ops = tuple(replace(s, unit=Unit(0, 0)) for s in self.ops)
        return replace(self, name=f"{self.name}:sequential", partitions=(whole,), ops=ops)

    @property
    def is_single_stream(self) -> bool:
        return len({(s.unit.partition, s.unit.stream) for s in self.ops}) == 1

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch_tokens": self.batch_tokens,
            "device_sms": self.device_sms,
            "partitions": [
                {"id": p.id, "sm_start": p.sm_start, "num_sms": p.num_sms} for p in self.partitions
            ],
            "ops": [
                _op_dict(s)
                for s in self.ops
            ],
            "order": [_step_dict(s) for s in self.order],
            "after": [[_step_dict(a), _step_dict(b)] for a, b in self.after],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Plan:
        try:
            return Plan(
                name=str(d["name"]),
                batch_tokens=int(d["batch_tokens"]),
                device_sms=int(d["device_sms"]),
                partitions=tuple(
                    Partition(int(p["id"]), int(p["sm_start"]), int(p["num_sms"]))
                    for p in d["partitions"]
                ),
                ops=tuple(
                    OpSplit(
                        str(s["op"]),
                        tuple(int(x) for x in s["sizes"]),
                        Unit(int(s["partition"]), int(s.get("stream", 0)), _opt_int(s)),
                    )
                    for s in d["ops"]
                ),
                order=tuple(_step(s) for s in d["order"]),
                after=tuple((_step(a), _step(b)) for a, b in d.get("after", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"malformed plan JSON: {exc!r}") from exc

    @staticmethod
    def from_json(text: str) -> Plan:
        return Plan.from_dict(json.loads(text))

    @staticmethod
    def load(path: str | Path) -> Plan:
        return Plan.from_json(Path(path).read_text())


class PlanError(ValueError):
    """An invalid plan; the message says which part and why."""


def _op_dict(s: OpSplit) -> dict[str, Any]:
    d: dict[str, Any] = {"op": s.op, "sizes": list(s.sizes), "partition": s.unit.partition,
                         "stream": s.unit.stream}  # fmt: skip
    if s.unit.max_sms is not None:
        d["max_sms"] = s.unit.max_sms
    return d


def _opt_int(d: dict[str, Any]) -> int | None:
    return None if d.get("max_sms") is None else int(d["max_sms"])


def _step_dict(s: Step) -> dict[str, Any]:
    d: dict[str, Any] = {"op": s.op, "nano_batch": s.nano_batch}
    if s.layer_shift:
        d["layer_shift"] = s.layer_shift
    return d


def _step(d: dict[str, Any]) -> Step:
    return Step(str(d["op"]), int(d["nano_batch"]), int(d.get("layer_shift", 0)))
