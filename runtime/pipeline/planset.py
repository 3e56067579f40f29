"""Searched plans by batch shape: a plan-set JSON names, for every bucket of (decode sequences,
prefill tokens, mean context), a plan file beside it or ``dense`` (no pipeline), with the
search's predicted forward times, for one KV cache dtype (the one the profile's attention read:
decode attention over an fp8 cache moves half the bytes, so the best plan differs). The runtime
looks the bucket up once per iteration."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runtime.pipeline.plan import Plan, PlanError

SCHEMA = "nanolang.plan-set"
VERSION = 1
CANDIDATES = "candidates"  # subdirectory: the best pipelines of buckets where dense won
# torch dtype names (``str(dtype)`` without "torch.") a KV cache may have
KV_DTYPES = ("bfloat16", "float16", "float32", "float8_e4m3fn")
# a plan-set file without the field: every set written before it was searched over a bf16 cache
LEGACY_KV_DTYPE = "bfloat16"


@dataclass(frozen=True)
class Bucket:
    decodes: int  # the bucket's representative batch shape
    prefill_tokens: int
    context: int
    plan: str | None  # a plan file name in the plan set's directory; None: dense
    predicted_ms: float  # the search's forward time of the decoder layers with this choice
    dense_ms: float  # the same for the dense forward
    reason: str = ""
    # dense won: the best pipeline the search found (a file under candidates/, never run by the
    # runtime; runtime.tune.verify measures it) and its predicted forward time
    candidate: str | None = None
    candidate_ms: float | None = None


@dataclass(frozen=True)
class PlanSet:
    model: str
    device: str
    device_sms: int
    decode_points: tuple[int, ...]
    prefill_points: tuple[int, ...]
    context_points: tuple[int, ...]
    buckets: tuple[Bucket, ...]
    # the context a batch without host lengths is looked up at (decode CUDA graphs are captured
    # per distinct plan of their batch size over context_points, runtime.cuda_graph)
    graph_context: int
    signature: dict[str, int] = field(default_factory=dict)  # the model's layer sizes
    profile: str = ""  # the profile the search read
    created: str = ""
    kv_cache_dtype: str = LEGACY_KV_DTYPE  # the KV cache the profile's attention read
    plans: dict[str, Plan] = field(default_factory=dict, compare=False)
    candidates: dict[str, Plan] = field(default_factory=dict, compare=False)  # saved, not loaded

    def __post_init__(self) -> None:
        if self.kv_cache_dtype not in KV_DTYPES:
            raise PlanError(f"plan set kv_cache_dtype {self.kv_cache_dtype!r} is not one of "
                            f"{', '.join(KV_DTYPES)}")  # fmt: skip
        have = {(b.decodes, b.prefill_tokens, b.context) for b in self.buckets}
        grid = {(d, p, c) for d in self.decode_points for p in self.prefill_points
                for c in self.context_points if d + p > 0}  # fmt: skip
        if have != grid or len(have) != len(self.buckets):
            missing = sorted(grid - have)[:3]
            raise PlanError(f"plan set buckets must cover its grid once each; missing {missing}")
        for b in self.buckets:
            if b.plan is not None and self.plans and b.plan not in self.plans:
                raise PlanError(f"bucket {b.decodes}/{b.prefill_tokens}/{b.context} names "
                                f"{b.plan}, which the plan set lacks")  # fmt: skip

    @cached_property
    def _index(self) -> dict[tuple[int, int, int], Bucket]:
        return {(b.decodes, b.prefill_tokens, b.context): b for b in self.buckets}

    def lookup(self, decodes: int, prefill_tokens: int, context: float | None) -> Bucket:
        """The bucket of a batch: the nearest representative in each dimension (0 only for 0)."""
        ctx = self.graph_context if context is None else context
        key = (_nearest(self.decode_points, decodes), _nearest(self.prefill_points, prefill_tokens),
               _nearest(self.context_points, ctx))  # fmt: skip
        try:
            return self._index[key]
        except KeyError:  # (0, 0): an empty batch
            msg = f"no bucket for {decodes} decodes and {prefill_tokens} prefill tokens"
            raise PlanError(msg) from None

    def plan_for(self, decodes: int, prefill_tokens: int, context: float | None) -> Plan | None:
        """The plan for a batch shape; None: run the dense forward."""
        b = self.lookup(decodes, prefill_tokens, context)
        return None if b.plan is None else self.plans[b.plan]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "model": self.model,
            "device": self.device,
            "device_sms": self.device_sms,
            "decode_points": list(self.decode_points),
            "prefill_points": list(self.prefill_points),
            "context_points": list(self.context_points),
            "graph_context": self.graph_context,
            "signature": self.signature,
            "profile": self.profile,
            "created": self.created,
            "kv_cache_dtype": self.kv_cache_dtype,
            "buckets": [b.__dict__ for b in self.buckets],
        }

    def save(self, directory: str | Path, name: str = "planset.json") -> Path:
        """Write the plan set and its plan files into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for fname, plan in {**self.plans, **self.candidates}.items():
            (out / fname).parent.mkdir(parents=True, exist_ok=True)
            (out / fname).write_text(plan.to_json() + "\n")
        path = out / name
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @staticmethod
    def load(path: str | Path) -> PlanSet:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PlanError(f"cannot read plan set {path}: {exc}") from exc
        if not is_plan_set(d):
            raise PlanError(f"{path} is not a plan set (schema {SCHEMA!r})")
        if d.get("version") != VERSION:
            raise PlanError(f"{path}: plan-set version {d.get('version')} is not {VERSION}")
        try:
            buckets = tuple(Bucket(**b) for b in d["buckets"])
            files = {b.plan for b in buckets if b.plan is not None}
            plans = {f: Plan.load(path.parent / f) for f in sorted(files)}
            return PlanSet(
                model=str(d["model"]), device=str(d["device"]), device_sms=int(d["device_sms"]),
                decode_points=tuple(d["decode_points"]), prefill_points=tuple(d["prefill_points"]),
                context_points=tuple(d["context_points"]), buckets=buckets,
                graph_context=int(d["graph_context"]), signature=dict(d.get("signature", {})),
                profile=str(d.get("profile", "")), created=str(d.get("created", "")),
                kv_cache_dtype=str(d.get("kv_cache_dtype", LEGACY_KV_DTYPE)), plans=plans,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, OSError) as exc:
            if isinstance(exc, PlanError):
                raise
            raise PlanError(f"malformed plan set {path}: {exc!r}") from exc


def signature_of(cfg: Any, dtype_bytes: int) -> dict[str, int]:
    """The layer sizes a plan set (and a profile) was made for, from a ModelConfig."""
    return {
        "hidden_size": int(cfg.hidden_size),
        "q_size": int(cfg.q_size),
        "kv_size": int(cfg.kv_size),
        "intermediate_size": int(cfg.intermediate_size),
        "num_layers": int(cfg.num_layers),
        "head_dim": int(cfg.head_dim),
        "dtype_bytes": int(dtype_bytes),
    }


def kv_dtype_name(dtype: Any) -> str:
    """A KV cache dtype as plan sets name it: torch.float8_e4m3fn -> 'float8_e4m3fn'."""
    return str(dtype).removeprefix("torch.")


def check_kv_dtype(planset: PlanSet, kv_dtype: Any, spec: str) -> None:
    """Refuse a plan set searched over another KV cache dtype than the engine's: its plans (and
    its dense answers) were chosen for attention reading other bytes per token."""
    have = kv_dtype_name(kv_dtype)
    if planset.kv_cache_dtype != have:
        flag = "--kv-cache-dtype fp8 " if have.startswith("float8") else ""
        raise PlanError(
            f"plan set {spec!r} was searched over a {planset.kv_cache_dtype} KV cache, this "
            f"engine's is {have}: run `nanolang tune {flag}--model ...` for it (or run the "
            f"engine with the plan set's kv_cache_dtype)"
        )


def is_plan_set(d: object) -> bool:
    return isinstance(d, dict) and d.get("schema") == SCHEMA


def _nearest(points: tuple[int, ...], x: float) -> int:
    """The nearest point (ties: the larger); 0 matches only 0 when the points include it."""
    candidates = [p for p in points if p > 0] if x > 0 and any(p > 0 for p in points) else points
    if x <= 0 and 0 in points:
        return 0
    return min(candidates, key=lambda p: (abs(p - x), -p))
