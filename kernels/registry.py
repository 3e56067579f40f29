"""One registry that picks, per operator, the fastest backend available on a device.

Backends register implementations under an operator name with a priority and an availability
check; ``get_ops(device)`` resolves every operator once and logs the choice. The runtime only ever
sees the resulting :class:`Ops`, never triton or flashinfer. Pointwise operators register plain
functions; ``paged_attention`` registers an :class:`AttentionBackend` class (called with the
device), because attention backends own per-batch plans and CUDA-graph state.

A fused operator (``rotary_store_kv``: rope, then the KV store of the rotated k and of v) is used
only where it comes from the backend that also gives both operators it replaces; otherwise (a
backend without the fused kernel wins one of them, or :meth:`Ops.unfused`) ``Ops`` holds None for
it and the model runs the two operators.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import cache
from typing import Any

import torch

from kernels import reference
from kernels.attention import AttentionBackend, TorchAttention
from kernels.decode_choice import DecodeChoice

logger = logging.getLogger("kernels")

OPERATORS = (
    "linear",
    "rms_norm",
    "add_rms_norm",
    "rotary",
    "silu_and_mul",
    "store_kv",
    "rotary_store_kv",
    "paged_attention",
    "sample",
    "argmax",
)


@dataclass(frozen=True)
class Implementation:
    backend: str
    fn: Callable[..., Any]
    priority: int  # higher wins
    available: Callable[[torch.device], bool]


_REGISTRY: dict[str, list[Implementation]] = {op: [] for op in OPERATORS}


def register(
    op: str,
    backend: str,
    fn: Callable[..., Any],
    priority: int,
    available: Callable[[torch.device], bool],
) -> None:
    if op not in _REGISTRY:
        raise ValueError(f"unknown operator {op!r}; known: {', '.join(OPERATORS)}")
    _REGISTRY[op] = [i for i in _REGISTRY[op] if i.backend != backend]
    _REGISTRY[op].append(Implementation(backend, fn, priority, available))


# (operator, backend) -> the implementation to run on a partition of N SMs: a GEMM beside
# attention on the other SMs (kernels whose grid cannot be aimed at a budget have none)
_ON_SMS: dict[tuple[str, str], Callable[[int], Callable[..., Any]]] = {}


def register_on_sms(op: str, backend: str, factory: Callable[[int], Callable[..., Any]]) -> None:
    """``factory(num_sms)``: the backend's ``op`` aimed at ``num_sms`` SMs (Ops.on_sms)."""
    if op not in _REGISTRY:
        raise ValueError(f"unknown operator {op!r}; known: {', '.join(OPERATORS)}")
    _ON_SMS[(op, backend)] = factory


ATTENTION = "paged_attention"  # the one operator whose implementations are backend classes
# fused operators and the operators each one replaces (see the module docstring)
FUSED = {"rotary_store_kv": ("rotary", "store_kv")}
UNFUSED = "unfused"  # the backend name of a fused operator that is not used

for _op in OPERATORS:
    _fn = TorchAttention if _op == ATTENTION else getattr(reference, _op)
    register(_op, "torch", _fn, priority=0, available=lambda _d: True)


@dataclass(frozen=True)
class Ops:
    """The resolved operator set for one device; ``backends`` maps operator -> backend name.

    ``paged_attention`` is an :class:`AttentionBackend` instance; a model runner takes its own
    with :meth:`fresh` (its plans and CUDA-graph buffers belong to one runner).
    """

    linear: Callable[..., torch.Tensor]
    rms_norm: Callable[..., torch.Tensor]
    add_rms_norm: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    rotary: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    silu_and_mul: Callable[..., torch.Tensor]
    store_kv: Callable[..., None]
    # None: run rotary, then store_kv (the fused kernel's backend lacks one of them, or unfused())
    rotary_store_kv: Callable[..., torch.Tensor] | None
    paged_attention: AttentionBackend
    sample: Callable[..., torch.Tensor]
    argmax: Callable[..., torch.Tensor]  # a greedy batch's choice (sample() draws the rest)
    backends: dict[str, str]

    def fresh(self) -> Ops:
        """The same operators with an attention backend of their own (no shared state)."""
        return replace(self, paged_attention=self.paged_attention.fresh())

    def on_sms(self, num_sms: int, confined: bool = False) -> Ops:
        """The operators to run on a partition of ``num_sms`` SMs: attention with its grid sized
        to them (``confined``: at most one program per SM, AttentionBackend.confined), and each
        operator whose backend can aim its kernels at an SM count (cuBLASLt's linear) so aimed;
        the rest unchanged."""
        att = self.paged_attention
        changes: dict[str, Any] = {
            ATTENTION: att.confined(num_sms) if confined else att.on_sms(num_sms)
        }
        for (op, backend), factory in _ON_SMS.items():
            if self.backends.get(op) == backend:
                changes[op] = factory(num_sms)
        return replace(self, **changes)

    def with_decode(self, choice: DecodeChoice) -> Ops:
        """The same operators, decode attention run as ``choice`` says where the backend has a
        choice (the Triton one; see kernels.decode_choice)."""
        return replace(self, paged_attention=self.paged_attention.with_decode(choice))

    def with_backend(self, op: str, backend: str, device: torch.device | str) -> Ops:
        """The same operators, ``op`` (not attention) from the named backend: an engine's
        per-operator choice, e.g. an opt-in kernel for one A/B run."""
        if op == ATTENTION or op in FUSED or op not in _REGISTRY:
            raise ValueError(f"with_backend takes a pointwise operator (a fused one follows "
                             f"the operators it fuses), got {op!r}")  # fmt: skip
        dev = torch.device(device)
        if dev.type != "cpu":
            _load_optional_backends()
        found = [i for i in _REGISTRY[op] if i.backend == backend and i.available(dev)]
        if not found:
            have = [i.backend for i in _REGISTRY[op] if i.available(dev)]
            raise ValueError(f"kernel backend {backend!r} for {op} is not available on {dev} "
                             f"(available: {', '.join(have)})")  # fmt: skip
        changes: dict[str, Any] = {op: found[0].fn}
        backends = {**self.backends, op: backend}
        for fused, parts in FUSED.items():  # in use: kept only if the new backend gives it too
            if op in parts and getattr(self, fused) is not None:
                changes[fused], backends[fused] = _fused(fused, backends, dev)
        return replace(self, **changes, backends=backends)

    def unfused(self) -> Ops:
        """The same operators, every fused one replaced by the operators it fuses (an A/B
        switch: ``EngineConfig.fuse_rope_kv_store=False``)."""
        changes: dict[str, Any] = dict.fromkeys(FUSED)
        backends = {**self.backends, **dict.fromkeys(FUSED, UNFUSED)}
        return replace(self, **changes, backends=backends)

    def describe(self) -> str:
        return ", ".join(f"{op}={b}" for op, b in self.backends.items())


def _forced() -> dict[str, str]:
    """NANOLANG_KERNELS='torch' forces one backend; 'paged_attention=triton,sample=torch' per op."""
    spec = os.environ.get("NANOLANG_KERNELS", "").strip()
    if not spec:
        return {}
    if "=" not in spec:
        return {op: spec for op in OPERATORS}
    forced = dict(part.split("=", 1) for part in spec.split(",") if part)
    for op in FUSED.keys() & forced.keys():
        raise ValueError(f"NANOLANG_KERNELS: {op} follows the backend of "
                         f"{' and '.join(FUSED[op])}; force those")  # fmt: skip
    return forced


def _load_optional_backends() -> None:
    # Each import registers its operators if its library is importable; failures mean "absent".
    for module in (
        "kernels.triton_backend",
        "kernels.flashinfer_backend",
        "kernels.sgl_kernel_backend",
        "kernels.cublaslt_backend",
    ):
        try:
            __import__(module)
        except ImportError as exc:
            logger.debug("kernel backend %s unavailable: %s", module, exc)


def _fused(
    op: str, backends: dict[str, str], dev: torch.device
) -> tuple[Callable[..., Any] | None, str]:
    """A fused operator from the one backend that gives every operator it replaces, if that
    backend registers it; else (None, UNFUSED): the model runs the parts."""
    names = {backends[part] for part in FUSED[op]}
    found = [i for i in _REGISTRY[op] if names == {i.backend} and i.available(dev)]
    return (found[0].fn, found[0].backend) if found else (None, UNFUSED)


@cache
def get_ops(device: torch.device | str, attention: str | None = None) -> Ops:
    """The best available operators on ``device``; ``attention`` names the paged-attention
    backend (it overrides NANOLANG_KERNELS for that operator)."""
    dev = torch.device(device)
    if dev.type != "cpu":
        _load_optional_backends()
    forced = _forced()
    if attention is not None:
        forced[ATTENTION] = attention
    chosen: dict[str, Implementation] = {}
    for op in OPERATORS:
        if op in FUSED:
            continue  # below, from its parts' backend
        candidates = [i for i in _REGISTRY[op] if i.available(dev)]
        if op in forced:
            candidates = [i for i in candidates if i.backend == forced[op]]
            if not candidates:
                raise ValueError(
                    f"kernel backend {forced[op]!r} for {op} is not available on {dev}"
                )
        chosen[op] = max(candidates, key=lambda i: i.priority)
    names = {op: impl.backend for op, impl in chosen.items()}
    fns: dict[str, Any] = {op: impl.fn for op, impl in chosen.items()}
    for op in FUSED:
        fns[op], names[op] = _fused(op, names, dev)
    names = {op: names[op] for op in OPERATORS}  # describe() in operator order
    fns[ATTENTION] = chosen[ATTENTION].fn(dev)  # the backend class, instantiated
    ops = Ops(**fns, backends=names)
    logger.info("kernels on %s: %s", dev, ops.describe())
    return ops


def attention_backends(device: torch.device | str) -> list[str]:
    """Names of the paged-attention backends available on ``device`` (optional ones loaded)."""
    dev = torch.device(device)
    if dev.type != "cpu":
        _load_optional_backends()
    return [i.backend for i in _REGISTRY[ATTENTION] if i.available(dev)]


def implementations(op: str) -> list[str]:
    """Backends registered for ``op`` (for tests and benchmark output)."""
    return [i.backend for i in _REGISTRY[op]]


assert {f.name for f in fields(Ops)} == {*OPERATORS, "backends"}
