"""``python -m runtime.bench.peer_worker JOB.json OUT.json``: one peer engine on the benchmark's
workloads, in its own process (so that it gets the whole GPU after nanolang released it).

The job names the engine (``vllm`` or ``sglang``), a Hugging Face config directory, the KV cache
dtype and the workloads with the request count, seed and scale the benchmark used: the worker makes
the same requests with the same generator (``runtime.bench.workloads``), submits them all at once
(greedy, ``ignore_eos``, exactly the output length) and times the engine's own offline
``generate``. It writes one record per workload; importing this module imports no peer.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.bench.workloads import WORKLOADS, BenchRequest, make_requests

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


def _vllm(model_dir: str, kv_dtype: str, max_len: int, extra: dict[str, Any]) -> tuple[
    Callable[[list[BenchRequest]], int], dict[str, Any]
]:  # fmt: skip
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=model_dir, load_format="dummy", skip_tokenizer_init=True, max_model_len=max_len,
        gpu_memory_utilization=0.90, kv_cache_dtype=KV_DTYPES["vllm"][kv_dtype], **extra,
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
    return run, info


def _sglang(model_dir: str, kv_dtype: str, max_len: int, extra: dict[str, Any]) -> tuple[
    Callable[[list[BenchRequest]], int], dict[str, Any]
]:  # fmt: skip
    import sglang

    options = {"attention_backend": "fa3", "sampling_backend": "pytorch", **extra}
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
        info["kv_cache_tokens"] = server.get("max_total_num_tokens")
        info["max_num_seqs"] = server.get("max_running_requests")
        info["max_num_batched_tokens"] = server.get("chunked_prefill_size")
    except Exception as exc:  # older or newer APIs: the throughput is what matters
        info["server_info_error"] = repr(exc)
    return run, info


ADAPTERS = {"vllm": _vllm, "sglang": _sglang}


def run_job(job: dict[str, Any], out: Path | None = None) -> list[dict[str, Any]]:
    """Every workload of the job on one engine instance; with ``out``, the records so far are
    written there after each workload (a run stopped midway keeps the finished ones)."""
    engine = job["engine"]
    if engine not in ADAPTERS:
        raise ValueError(f"unknown peer {engine!r}; known: {', '.join(ADAPTERS)}")
    version = engine_version(engine)
    vocab = int(json.loads((Path(job["model_dir"]) / "config.json").read_text())["vocab_size"])
    start = time.perf_counter()
    run, info = ADAPTERS[engine](
        job["model_dir"], job["kv_cache_dtype"], job["max_model_len"], job.get("engine_args", {})
    )
    init_s = time.perf_counter() - start
    records = []
    for spec in job["workloads"]:
        reqs = job_requests(spec, vocab)
        t0 = time.perf_counter()
        out_tokens = run(reqs)
        secs = time.perf_counter() - t0
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
            "engine_args": job.get("engine_args", {}),
            **info,
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
    if len(args) != 2:
        print("usage: python -m runtime.bench.peer_worker JOB.json OUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    out = Path(args[1])
    write_atomically(out, run_job(job, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
