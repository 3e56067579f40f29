"""``python -m runtime.bench.peer_worker JOB.json OUT.json``: one peer engine on the benchmark's
workloads, in its own process (so that it gets the whole GPU after nanolang released it).

The job names the engine (``vllm`` or ``sglang``), a Hugging Face config directory, the KV cache
dtype and the workloads with the request count, seed and scale the benchmark used: the worker makes
the same requests with the same generator (``runtime.bench.workloads``), submits them all at once
(greedy, ``ignore_eos``, exactly the output length) and times the engine's own offline
``generate``. With ``warmup_requests`` it first serves, for each workload in turn, that many
untimed requests of its prompt lengths, the ones nanolang's engines warm up on (what a peer
compiles or tunes on its first batches of a shape is then not inside a timed workload). With
``batch_stats`` the peer also reports its batches (vLLM's statistics on, SGLang's scheduler log at
info level), and each record has the largest batch and the preemptions. It writes one record per
workload; importing this module imports no peer.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.bench.workloads import WORKLOADS, BenchRequest, make_requests, warmup_requests

# the peers' own names for an FP8 (e4m3) KV cache
KV_DTYPES = {
    "vllm": {"auto": "auto", "fp8": "fp8"},
    "sglang": {"auto": "auto", "fp8": "fp8_e4m3"},
}


def engine_version(engine: str) -> str:
    return importlib.metadata.version(engine)


def job_requests(job: dict[str, Any], vocab_size: int) -> list[BenchRequest]:
    return make_requests(
        WORKLOADS[job["workload"]], job["num_requests"], vocab_size, job["seed"], job["scale"]
    )


@dataclass
class BatchWatch:
    """The largest batch (running sequences in one iteration) a peer reached and how many
    sequences it preempted, per workload, from what the peer itself reports (``source``)."""

    source: str
    max_batch_seqs: int = 0
    preemptions: int = 0

    def reset(self) -> None:
        self.max_batch_seqs = self.preemptions = 0

    def seen(self, running: int, preempted: int = 0) -> None:
        self.max_batch_seqs = max(self.max_batch_seqs, running)
        self.preemptions += preempted

    def fields(self) -> dict[str, Any]:
        return {"max_batch_seqs": self.max_batch_seqs, "preemptions": self.preemptions,
                "max_batch_source": self.source}  # fmt: skip


Runner = Callable[[list[BenchRequest]], int]


def _vllm(
    model_dir: str, kv_dtype: str, max_len: int, extra: dict[str, Any], batch_stats: bool
) -> tuple[Runner, dict[str, Any], BatchWatch | None]:
    from vllm import LLM, SamplingParams

    # batch_stats: statistics on (vLLM's offline default is off); its scheduler's per-iteration
    # counts are how the largest batch is known
    options = {**({"disable_log_stats": False} if batch_stats else {}), **extra}
    llm = LLM(
        model=model_dir, load_format="dummy", skip_tokenizer_init=True, max_model_len=max_len,
        gpu_memory_utilization=0.90, kv_cache_dtype=KV_DTYPES["vllm"][kv_dtype], **options,
    )  # fmt: skip

    def run(reqs: list[BenchRequest]) -> int:
        prompts = [{"prompt_token_ids": r.prompt_token_ids} for r in reqs]
        params = [
            SamplingParams(max_tokens=r.output_len, temperature=0.0, ignore_eos=True,
                           detokenize=False)
            for r in reqs
        ]  # fmt: skip
        outs = llm.generate(prompts, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    info: dict[str, Any] = {}
    cfg = getattr(getattr(llm, "llm_engine", None), "vllm_config", None)
    if cfg is not None:
        blocks = getattr(cfg.cache_config, "num_gpu_blocks", None)
        if blocks:
            info["kv_cache_tokens"] = int(blocks) * int(cfg.cache_config.block_size)
        info["max_num_seqs"] = getattr(cfg.scheduler_config, "max_num_seqs", None)
        info["max_num_batched_tokens"] = getattr(
            cfg.scheduler_config, "max_num_batched_tokens", None
        )
    return run, info, _watch_vllm(llm)


def _watch_vllm(llm: Any) -> BatchWatch | None:
    """Count running and preempted sequences in every iteration's statistics that vLLM's engine
    hands its stat loggers (None where this vLLM has no such hook or statistics are off)."""
    manager = getattr(getattr(llm, "llm_engine", None), "logger_manager", None)
    if manager is None:
        return None
    watch = BatchWatch("vllm scheduler statistics, every iteration with outputs")
    record = manager.record

    def counting(scheduler_stats: Any, iteration_stats: Any, *args: Any, **kw: Any) -> Any:
        watch.seen(getattr(scheduler_stats, "num_running_reqs", 0),
                   getattr(iteration_stats, "num_preempted_reqs", 0))  # fmt: skip
        return record(scheduler_stats, iteration_stats, *args, **kw)

    manager.record = counting
    return watch


# SGLang's scheduler (a process of its own) logs its batch at info level: every prefill batch and
# every 40th decode batch, and each retraction (its preemption) as a warning
SGLANG_RUNNING = re.compile(rb"#running-req: (\d+)")
SGLANG_RETRACTED = re.compile(rb"#retracted_reqs: (\d+)")


def _sglang(
    model_dir: str, kv_dtype: str, max_len: int, extra: dict[str, Any], batch_stats: bool
) -> tuple[Runner, dict[str, Any], BatchWatch | None]:
    import sglang

    # batch_stats: its scheduler logs at info level (the offline engine's default is error)
    options = {"attention_backend": "fa3", "sampling_backend": "pytorch",
               **({"log_level": "info"} if batch_stats else {}), **extra}  # fmt: skip
    llm = sglang.Engine(
        model_path=model_dir, load_format="dummy", skip_tokenizer_init=True,
        mem_fraction_static=0.85, context_length=max_len,
        kv_cache_dtype=KV_DTYPES["sglang"][kv_dtype], **options,
    )  # fmt: skip

    def run(reqs: list[BenchRequest]) -> int:
        ids = [r.prompt_token_ids for r in reqs]
        params = [
            {"max_new_tokens": r.output_len, "temperature": 0.0, "ignore_eos": True} for r in reqs
        ]
        outs = llm.generate(input_ids=ids, sampling_params=params)
        return sum(len(o["output_ids"]) for o in outs)

    info: dict[str, Any] = {}
    try:
        server = llm.get_server_info()
        state = (server.get("internal_states") or [{}])[0]
        info["kv_cache_tokens"] = server.get("max_total_num_tokens")
        # the cap the scheduler derived from memory (0.5.17: in its internal state)
        info["max_num_seqs"] = server.get("max_running_requests") or state.get(
            "effective_max_running_requests_per_dp"
        )
        info["max_num_batched_tokens"] = server.get("chunked_prefill_size")
    except Exception as exc:  # older or newer APIs: the throughput is what matters
        info["server_info_error"] = repr(exc)
    if options.get("log_level") not in ("info", "debug"):
        return run, info, None  # its scheduler logs no batches at this level
    watch = BatchWatch("sglang scheduler log: every prefill batch and every 40th decode batch")
    return run, info, watch


class StderrLog:
    """This process's standard error (fd 2, which the peer's own processes inherit) into a file,
    read back after each workload: what the peer logged is scanned for its batch sizes and then
    copied to the original standard error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        sys.stderr.flush()
        self.saved = os.dup(2)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)

    def read_new(self, whole_lines: bool = True) -> bytes:
        """What was logged since the last call (up to its last full line, a line still being
        written is left for the next call), also written to the original standard error."""
        sys.stderr.flush()
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        if whole_lines:
            data = data[: data.rfind(b"\n") + 1]
        self.offset += len(data)
        os.write(self.saved, data)
        return data

    def close(self) -> None:
        self.read_new(whole_lines=False)
        os.dup2(self.saved, 2)
        os.close(self.saved)


def scan_sglang_log(text: bytes, watch: BatchWatch) -> None:
    for m in SGLANG_RUNNING.finditer(text):
        watch.seen(int(m.group(1)))
    for m in SGLANG_RETRACTED.finditer(text):
        watch.seen(0, int(m.group(1)))


ADAPTERS = {"vllm": _vllm, "sglang": _sglang}

# where each peer declares the keyword arguments its offline engine takes (dataclass fields)
ARGS_CLASSES = {"vllm": ("vllm.engine.arg_utils", "EngineArgs"),
                "sglang": ("sglang.srt.server_args", "ServerArgs")}  # fmt: skip


def unknown_engine_args(engine: str, keys: list[str]) -> list[str]:
    """The keys the peer's engine does not take, each with the closest names it does (imports
    only the peer's argument module: seconds, where starting the engine takes minutes)."""
    import dataclasses
    import difflib
    import importlib

    module, name = ARGS_CLASSES[engine]
    fields = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
    problems = []
    for key in keys:
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"{key}{hint}")
    return problems


CANNOT_CHECK = 3  # the peer's argument class is not where ARGS_CLASSES says (another version)


def check_main(engine: str, keys_json: str) -> int:
    """``--check ENGINE KEYS_JSON``: exit 2 naming the keys ``engine`` does not take, 3 when its
    arguments cannot be looked up, else 0."""
    if engine not in ARGS_CLASSES:
        print(f"unknown peer {engine!r}; known: {', '.join(ARGS_CLASSES)}", file=sys.stderr)
        return 2
    try:
        bad = unknown_engine_args(engine, list(json.loads(keys_json)))
    except (ImportError, AttributeError, TypeError) as exc:  # another layout: the run decides
        print(f"cannot check {engine}'s arguments: {exc!r}", file=sys.stderr)
        return CANNOT_CHECK
    if bad:
        version = engine_version(engine)
        print(f"{engine} {version} takes no argument {'; '.join(bad)}", file=sys.stderr)
        return 2
    return 0


def run_job(job: dict[str, Any], out: Path | None = None) -> list[dict[str, Any]]:
    """Every workload of the job on one engine instance; with ``out``, the records so far are
    written there after each workload (a run stopped midway keeps the finished ones)."""
    engine = job["engine"]
    if engine not in ADAPTERS:
        raise ValueError(f"unknown peer {engine!r}; known: {', '.join(ADAPTERS)}")
    scan = engine == "sglang" and job.get("batch_stats", False)
    with tempfile.TemporaryDirectory() as tmp:
        log = StderrLog(Path(tmp) / "stderr.log") if scan else None
        try:
            return _run_workloads(job, engine, out, log)
        finally:
            if log is not None:
                log.close()


def _run_workloads(
    job: dict[str, Any], engine: str, out: Path | None, log: StderrLog | None
) -> list[dict[str, Any]]:
    version = engine_version(engine)
    vocab = int(json.loads((Path(job["model_dir"]) / "config.json").read_text())["vocab_size"])
    start = time.perf_counter()
    run, info, watch = ADAPTERS[engine](
        job["model_dir"], job["kv_cache_dtype"], job["max_model_len"], job.get("engine_args", {}),
        job.get("batch_stats", False),
    )  # fmt: skip
    init_s = time.perf_counter() - start
    warmup = int(job.get("warmup_requests", 0))
    warmup_s = None
    if warmup > 0:
        t0 = time.perf_counter()
        for spec in job["workloads"]:
            run(warmup_requests(spec["workload"], warmup, vocab, spec["scale"]))
        warmup_s = round(time.perf_counter() - t0, 1)
    records = []
    for spec in job["workloads"]:
        reqs = job_requests(spec, vocab)
        if log is not None:
            log.read_new()  # start and warm-up: not this workload's
        if watch is not None:
            watch.reset()
        t0 = time.perf_counter()
        out_tokens = run(reqs)
        secs = time.perf_counter() - t0
        if log is not None and watch is not None:
            scan_sglang_log(log.read_new(), watch)
        prompt = sum(len(r.prompt_token_ids) for r in reqs)
        records.append({
            "engine": f"{engine} {version}",
            "version": version,
            "workload": spec["workload"],
            "num_requests": len(reqs),
            "tensor_parallel_size": job.get("tensor_parallel_size", 1),
            "kv_cache_dtype": job["kv_cache_dtype"],
            "prompt_tokens": prompt,
            "output_tokens": out_tokens,
            "seconds": round(secs, 3),
            "total_tokens_per_s": round((prompt + out_tokens) / secs, 1),
            "output_tokens_per_s": round(out_tokens / secs, 1),
            "init_seconds": round(init_s, 1),
            "warmup_requests": warmup,
            "warmup_seconds": warmup_s,
            "engine_args": job.get("engine_args", {}),
            **info,
            **(watch.fields() if watch is not None else {}),
        })  # fmt: skip
        print(json.dumps(records[-1]), file=sys.stderr, flush=True)
        if out is not None:
            write_atomically(out, records)
    return records


def write_atomically(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(records, indent=1) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "--check":
        return check_main(args[1], args[2])
    if len(args) != 2:
        print("usage: python -m runtime.bench.peer_worker JOB.json OUT.json\n"
              "       python -m runtime.bench.peer_worker --check ENGINE KEYS_JSON",
              file=sys.stderr)  # fmt: skip
        return 2
    job = json.loads(Path(args[0]).read_text())
    out = Path(args[1])
    write_atomically(out, run_job(job, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
