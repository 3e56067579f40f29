"""Runs the program benchmark: each program, each memory setting, each mode; JSON records.

One engine (one model, its CUDA graphs) serves every program, setting and mode: each mode starts
on an empty KV cache of its setting's size, prefix caching on or off (``LLMEngine.reset_kv``).
Without memory pressure the KV cache gets the engine's usual budget; with it, a budget
of ``pressure_fraction`` of what all concurrent instances would hold at their peaks (estimated
as ``nanolang.run.footprint`` does), but at least twice the largest single instance plus 64
tokens, so every instance fits on its own while the instances together exceed the cache.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nanolang.api.program import compile
from nanolang.backends.local import LocalBackend
from nanolang.bench.lockstep import LockstepBackend
from nanolang.bench.modes import MODES, Measurement, run_mode
from nanolang.bench.programs import PROGRAMS, BenchProgram
from nanolang.run.footprint import footprint
from nanolang.run.token_cache import TokenCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    programs: tuple[str, ...] = tuple(PROGRAMS)
    modes: tuple[str, ...] = MODES
    pressure: tuple[bool, ...] = (False, True)
    instances: int = 1000
    naive_instances: int = 4  # naive runs one call at a time: a sample of the instances
    scale: float = 1.0
    gen_scale: float | None = None  # generation lengths alone (None: ``scale``)
    pressure_fraction: float = 0.25
    model: str = "llama-3-8b"  # a preset (random weights, the demo tokenizer), a dir, or "demo"
    hf_overrides: dict[str, Any] | None = None  # config fields to replace (a preset's only)
    device: str = "auto"
    dtype: str = "auto"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    enforce_eager: bool = False
    async_scheduling: bool | None = None
    lockstep: bool = False  # step the engine on the event loop (deterministic schedule)
    pause_gc: bool = True  # Python's garbage collector off while a mode runs (see modes.py)
    warmup_instances: int = 8  # run untimed before the first measured mode (0: none)
    repeats: int = 1  # runs of each mode (modes alternating); the record is the median run's
    command: str = ""

    def __post_init__(self) -> None:
        unknown = [p for p in self.programs if p not in PROGRAMS]
        if unknown:
            raise ValueError(f"unknown programs {unknown}; choose from {', '.join(PROGRAMS)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ValueError(f"unknown modes {bad}; choose from {', '.join(MODES)}")
        if self.instances < 1 or self.naive_instances < 1:
            raise ValueError("instances and naive_instances must be >= 1")
        if self.repeats < 1:
            raise ValueError("repeats must be >= 1")
        if self.warmup_instances < 0:
            raise ValueError("warmup_instances must be >= 0")
        if self.gen_scale is not None and self.gen_scale <= 0:
            raise ValueError("gen_scale must be > 0")
        if not 0 < self.pressure_fraction < 1:
            raise ValueError("pressure_fraction must be in (0, 1)")


def model_source(
    model: str, workdir: Path, overrides: dict[str, Any] | None = None
) -> tuple[str, str]:
    """(model directory, load format): the demo model, a directory, or a preset's architecture
    with random weights and the demo model's tokenizer (vocabulary resized to it)."""
    from nanolang.demo import model_dir
    from runtime.config import PRESET_DIR, read_json

    demo = model_dir()
    if model == "demo":
        return str(demo), "auto"
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), "auto"
    preset = PRESET_DIR / f"{model}.json"
    if not preset.exists():
        raise ValueError(f"model {model!r} is not 'demo', a directory or a preset")
    config = read_json(preset)
    demo_config = read_json(demo / "config.json")
    config.update(
        vocab_size=demo_config["vocab_size"],
        bos_token_id=demo_config.get("bos_token_id"),
        eos_token_id=demo_config.get("eos_token_id"),
    )
    config.update(overrides or {})
    target = workdir / model
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (demo / name).exists():
            shutil.copy(demo / name, target / name)
    return str(target), "dummy"


def build_backend(
    cfg: BenchConfig, model_dir: str, load_format: str, caching: bool, kv: int | None
) -> LocalBackend:
    from runtime import LLM

    llm = LLM(
        model_dir, dtype=cfg.dtype, device=cfg.device, load_format=load_format,
        enable_prefix_caching=caching, kv_cache_memory_bytes=kv, max_num_seqs=cfg.max_num_seqs,
        max_num_batched_tokens=cfg.max_num_batched_tokens, enforce_eager=cfg.enforce_eager,
        async_scheduling=cfg.async_scheduling,
    )  # fmt: skip
    return LockstepBackend(llm) if cfg.lockstep else LocalBackend(llm)


def pressure_tokens(program: BenchProgram, module: Any, jobs: list, tokenizer: Any, frac: float):
    definition = module.get("main")
    cache = TokenCache(tokenizer)
    peaks = [footprint(module, definition, args, tokenizer, cache).tokens for _, args in jobs]
    # twice the largest instance and a few blocks (partial blocks): each fits alone, with room
    return max(2 * max(peaks) + 64, int(frac * sum(peaks))), sum(peaks)


def record(
    cfg: BenchConfig, name: str, mode: str, pressure: bool, m: Measurement, extra: dict[str, Any]
) -> dict[str, Any]:
    ok = sum(o.ok for o in m.outcomes)
    lat = sorted(m.latencies)
    return {
        "program": name,
        "mode": mode,
        "memory_pressure": pressure,
        "instances": len(m.outcomes),
        # naive runs the first instances one call at a time: its rates are per instance of a
        # sample of this many of the other modes' instances
        "sample_of_instances": cfg.instances if mode == "naive" else None,
        "instances_ok": ok,
        "errors": sorted({str(o.error).splitlines()[0] for o in m.outcomes if o.error})[:3],
        "seconds": round(m.seconds, 4),
        "instances_per_s": round(ok / m.seconds, 4) if m.seconds else 0.0,
        "tokens_per_s": round(m.generated_tokens / m.seconds, 2) if m.seconds else 0.0,
        "generated_tokens": m.generated_tokens,
        "prefill_tokens_computed": m.prefill_tokens,
        "cache_hit_rate": round(m.hit_tokens / m.query_tokens, 4) if m.query_tokens else 0.0,
        "peak_kv_blocks": m.peak_blocks,
        "peak_kv_use": round(m.peak_blocks / extra["kv_blocks"], 4),
        "latency_p50_s": round(statistics.median(lat), 4),
        "latency_p99_s": round(lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)], 4),
        "preemptions": m.preemptions,
        "engine_iterations": m.iterations,
        **m.batches.as_record(),
        "runtime_policies": m.engine if mode == "graph" else None,
        **extra,
    }


def run_programs(
    cfg: BenchConfig, sink: Callable[[list[dict[str, Any]]], None] | None = None
) -> list[dict[str, Any]]:
    """Every program x memory setting x mode; one record each. One engine serves them all: each
    mode starts on an empty KV cache of the setting's size (``LLMEngine.reset_kv``), so the
    model and its CUDA graphs are built once. ``sink`` gets the records so far after each
    mode (so a run cut short keeps what it measured)."""
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, load_format = model_source(cfg.model, Path(tmp), cfg.hf_overrides)
        backend = build_backend(cfg, model_dir, load_format, True, None)
        try:
            for index, name in enumerate(cfg.programs):
                workload = Workload.make(cfg, PROGRAMS[name], backend.tokenizer)
                if index == 0:
                    warm_up(cfg, workload, backend)
                for pressure in cfg.pressure:
                    save = _prefixed(sink, records)
                    records += run_program(cfg, workload, pressure, backend, save)
        finally:
            backend.close()
            del backend
            _free_memory()
    return records


def warm_up(cfg: BenchConfig, workload: Workload, backend: LocalBackend) -> None:
    """Run the first ``warmup_instances`` instances once in each concurrent mode measured
    (independent requests, graph nodes; independent requests when only naive is), untimed and
    unrecorded, so that no measured mode pays for the process's first requests (lazy imports,
    the allocator's first blocks, first-use caches, the first batches of each size)."""
    n = min(cfg.warmup_instances, len(workload.jobs))
    if n == 0:
        return
    modes = [m for m in cfg.modes if m != "naive"] or ["independent"]
    for mode in dict.fromkeys(modes):
        backend.llm.engine.reset_kv(None, enable_prefix_caching=True)
        run_mode(mode, backend, workload.module, workload.jobs[:n], cfg.pause_gc)
    log.info(
        "warm-up: %d instances of %s in %s (not measured)",
        n, workload.program.name, ", ".join(dict.fromkeys(modes)),
    )  # fmt: skip


@dataclass(frozen=True)
class Workload:
    """One program's checked module, its instances' arguments and its KV demand (made once,
    for both memory settings)."""

    program: BenchProgram
    module: Any
    jobs: list[tuple[str, dict[str, Any]]]
    kv_tokens: int  # the cache under memory pressure
    demand: int  # every instance's peak, summed

    @classmethod
    def make(cls, cfg: BenchConfig, program: BenchProgram, tokenizer: Any) -> Workload:
        module = compile(program.source, "main", f"<bench {program.name}>").module
        jobs = [
            ("main", program.args(i, cfg.scale, tokenizer, cfg.gen_scale))
            for i in range(cfg.instances)
        ]
        kv, demand = pressure_tokens(program, module, jobs, tokenizer, cfg.pressure_fraction)
        return cls(program, module, jobs, kv, demand)


def _prefixed(
    sink: Callable[[list[dict[str, Any]]], None] | None, done: list[dict[str, Any]]
) -> Callable[[list[dict[str, Any]]], None] | None:
    """``sink`` of the records before this program and setting (a copy) plus its own."""
    if sink is None:
        return None
    before = list(done)
    return lambda new: sink(before + new)


def run_program(
    cfg: BenchConfig,
    workload: Workload,
    pressure: bool,
    backend: LocalBackend,
    sink: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """One record per mode: with ``repeats`` > 1 every mode runs that many times, the modes
    alternating (a, b, c, a, b, c, ...) so that a drift of the machine reaches them alike, and
    each mode's record is that of its median run (``median_run``)."""
    engine = backend.llm.engine
    block = engine.config.block_size
    blocks = None
    if pressure:
        blocks = min(math.ceil(workload.kv_tokens / block), engine.kv_capacity_blocks)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in cfg.modes}
    for repeat in range(cfg.repeats):
        for mode in cfg.modes:
            run = measure(cfg, workload, pressure, backend, blocks, mode)
            runs[mode].append(run)
            log.info(
                "%s pressure=%s %s%s: %d instances in %.2f s (%.3f instances/s)",
                workload.program.name, pressure, mode,
                f" (run {repeat + 1} of {cfg.repeats})" if cfg.repeats > 1 else "",
                run["instances"], run["seconds"], run["instances_per_s"],
            )  # fmt: skip
            if sink is not None:
                sink([median_run(r) for r in runs.values() if r])
    return [median_run(runs[mode]) for mode in cfg.modes]


def median_run(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The record of the run of median time (the faster of the middle two when even), with
    every run's seconds and instances/s in run order."""
    chosen = sorted(records, key=lambda r: r["seconds"])[(len(records) - 1) // 2]
    return {
        **chosen,
        "repeats": len(records),
        "repeat_seconds": [r["seconds"] for r in records],
        "repeat_instances_per_s": [r["instances_per_s"] for r in records],
    }


def measure(
    cfg: BenchConfig,
    workload: Workload,
    pressure: bool,
    backend: LocalBackend,
    blocks: int | None,
    mode: str,
) -> dict[str, Any]:
    """One run of ``mode`` on an empty KV cache of ``blocks`` blocks (None: the engine's own
    size), as a record."""
    engine = backend.llm.engine
    caching = mode != "naive"
    engine.reset_kv(blocks, enable_prefix_caching=caching)
    extra = {
        "device": _device_name(engine.device),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": cfg.command,
        "model": cfg.model,
        "hf_overrides": cfg.hf_overrides,
        "scale": cfg.scale,
        "gen_scale": cfg.gen_scale,
        "lockstep": cfg.lockstep,
        "gc_paused": cfg.pause_gc,
        "warmup_instances": cfg.warmup_instances,
        "kv_blocks": engine.blocks.allocator.num_blocks,
        "kv_capacity_tokens": backend.kv_capacity_tokens,
        "instances_peak_demand_tokens": workload.demand,
        "prefix_caching": caching,
        "max_num_seqs": cfg.max_num_seqs,
        "max_num_batched_tokens": cfg.max_num_batched_tokens,
    }
    n = cfg.naive_instances if mode == "naive" else cfg.instances
    measured = run_mode(mode, backend, workload.module, workload.jobs[:n], cfg.pause_gc)
    return record(cfg, workload.program.name, mode, pressure, measured, extra)


def _device_name(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def speedups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """graph / naive and graph / independent instances_per_s per program and memory setting."""
    rows = []
    keys = sorted({(r["program"], r["memory_pressure"]) for r in records})
    for program, pressure in keys:
        by_mode = {
            r["mode"]: r["instances_per_s"]
            for r in records
            if r["program"] == program and r["memory_pressure"] == pressure
        }
        graph = by_mode.get("graph")
        row: dict[str, Any] = {"program": program, "memory_pressure": pressure, **by_mode}
        for base in ("naive", "independent"):
            if graph and by_mode.get(base):
                row[f"graph_vs_{base}"] = round(graph / by_mode[base], 2)
        rows.append(row)
    return rows
