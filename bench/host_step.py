"""Host time of whole engine iterations with N sequences decoding (tiny model on the CPU).

A real engine (tiny random model and tokenizer, detokenisation on) runs ``--warmup`` iterations so
every sequence has output to carry, then ``--repeats`` timed ones. Per iteration it records the
host's own work: schedule, plan (batch and metadata arrays), launch bookkeeping and postprocess
(placing sampled tokens, stop checks, detokenisation, outputs) -- the iteration's wall time less
the model's forward and sampling (``ModelRunner.execute``) and the read-back wait, which on a GPU
run on the device. ``--prefill`` adds that many new prompts of ``--prompt-len`` tokens before
each timed iteration (mixed prefill + decode batches). ``--output-kind`` is the requests'
``OutputKind``: ``final_only`` (what ``LLM.generate`` and ``runtime.bench`` ask for) or
``cumulative`` (an output per request per iteration, as for a streaming caller). ``host_cpu``
is the same host work as the engine thread's CPU time (``time.thread_time``): on a shared
machine the time other processes take from it does not count. ``--stub-model`` replaces the
forward and sampling by a stub that returns token 7 for every sampling row: the host's work
without a CPU forward between iterations (a forward of the tiny model over 1,000 sequences takes
seconds and leaves the host's data out of the caches; on a GPU host it runs on the device).
Fastest and median in microseconds.
Usage (repo root): PYTHONPATH=. python bench/host_step.py --seqs 256,1000 --out FILE.json
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from host_schedule import cpu_record, emit  # bench/ is the script's directory

from runtime import LLM, OutputKind, SamplingParams
from runtime.model_runner import DeviceStep
from runtime.tiny import make_tiny_model


def _timed(fn: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    """``fn`` adding its wall time to ``spent[0]`` and its thread's CPU time to ``spent[1]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0
            spent[1] += time.thread_time() - c0

    return wrapper


def _stub_execute(plan: Any, prev_tokens: Any) -> DeviceStep:
    """The runner's ``execute`` without a model: token 7 for every sampling row."""
    tokens = torch.full((len(plan.sample_rows),), 7, dtype=torch.int64)
    return DeviceStep(plan, tokens, tokens, None, {}, None, None)


def measure(seqs: int, prefill: int, prompt_len: int, warmup: int, repeats: int,
            model_dir: Path, kind: OutputKind, stub: bool) -> dict[str, Any]:  # fmt: skip
    extra = prefill * (repeats + 1)
    llm = LLM(str(model_dir), dtype="float32", device="cpu", max_num_seqs=seqs + extra,
              max_num_batched_tokens=max(2048, seqs + prefill * prompt_len),
              enable_prefix_caching=False, async_scheduling=True,
              kv_cache_memory_bytes=512 << 20)  # fmt: skip
    engine = llm.engine
    device = [0.0, 0.0]  # wall, CPU time of this thread
    execute = _stub_execute if stub else engine.runner.execute
    engine.runner.execute = _timed(execute, device)  # type: ignore[method-assign]
    params = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)
    for i in range(seqs):
        engine.add_request([5 + (i * 7 + j) % 300 for j in range(16)], params, output_kind=kind)
    new = SamplingParams(max_tokens=100, temperature=0.0, ignore_eos=True)
    for _ in range(warmup):
        engine.step()
    rows: dict[str, list[float]] = {"host": [], "host_cpu": [], "schedule": [], "prepare": [],
                                    "postprocess": []}  # fmt: skip
    for r in range(repeats):
        for i in range(prefill):
            prompt = [5 + (r * 13 + i * 3 + j) % 300 for j in range(prompt_len)]
            engine.add_request(prompt, new, output_kind=kind)
        device[:] = [0.0, 0.0]
        t0, c0 = time.perf_counter(), time.thread_time()
        engine.step()
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        s, t = engine.stats, engine.runner.timings
        rows["host"].append(wall - device[0] - t.wait_s)
        rows["host_cpu"].append(cpu - device[1])
        rows["schedule"].append(s.last_schedule_seconds)
        rows["prepare"].append(t.prepare_s)
        rows["postprocess"].append(s.last_postprocess_seconds)
    assert engine.stats.last_batch_seqs >= seqs, "the timed iterations did not hold every decode"
    out: dict[str, Any] = {"seqs": seqs, "prefill_prompts_per_iteration": prefill,
                           "output_kind": kind.value, "stub_model": stub,
                           "batch_tokens_last": engine.stats.last_batch_tokens}  # fmt: skip
    for name, vals in rows.items():
        out[f"{name}_us_min"] = round(1e6 * min(vals), 1)
        out[f"{name}_us_median"] = round(1e6 * statistics.median(vals), 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seqs", default="256,1000", help="comma list of decode batch sizes")
    ap.add_argument("--prefill", default="0,2", help="comma list: new prompts per iteration")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=200, help="iterations before timing")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--output-kind", default="final_only",
                    choices=[k.value for k in OutputKind])  # fmt: skip
    ap.add_argument("--stub-model", action="store_true", help="no forward: see above")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--code", default=None, help="what code ran (default: its git commit)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_model(Path(tmp) / "tiny", arch="llama", seed=1)
        rows = [
            measure(
                int(n),
                int(p),
                args.prompt_len,
                args.warmup,
                args.repeats,
                Path(model_dir),
                OutputKind(args.output_kind),
                args.stub_model,
            )
            for n in args.seqs.split(",")
            for p in args.prefill.split(",")
        ]
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes")
    emit(cpu_record("host_step", args.code, rows, now), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
