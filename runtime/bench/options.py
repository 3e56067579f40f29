"""Command-line options of the benchmark (argparse only: importing this loads no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.bench.workloads import WARMUP_OUTPUT_TOKENS
from runtime.config import EngineConfig

WORKLOAD_NAMES = (
    "512/512", "1024/512", "512/1024", "sharegpt", "lmsys", "splitwise", "1000/1000",
)  # fmt: skip


def _count(text: str) -> int:
    """An argparse type: a whole number, zero or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    """An argparse type: a whole number, one or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    """An argparse type: a time limit in seconds, more than zero."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="python -m runtime.bench", description=__doc__)
    ap.add_argument("--model", default="llama-3-8b", help="preset or model directory")
    ap.add_argument("--load-format", default="dummy")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument(
        "--workloads",
        default="all",
        help=f"comma list of {', '.join(WORKLOAD_NAMES)}, each optionally NAME:REQUESTS "
        "(e.g. 1024/512:256,sharegpt:1000: its own request count)",
    )
    ap.add_argument(
        "--num-requests", type=int, default=1000, help="per workload without its own count"
    )
    ap.add_argument("--scale", type=float, default=1.0, help="shrink lengths (tests)")
    ap.add_argument("--max-num-seqs", type=int, default=1024, help="a cap; memory decides")
    ap.add_argument("--admission-reserve-tokens", type=int, default=2048)
    ap.add_argument(
        "--admission-tail-overcommit",
        default=None,
        help="comma list of EngineConfig.admission_tail_overcommit values, one engine each "
        "(default: the engine's)",
    )
    ap.add_argument("--max-num-batched-tokens", type=int, default=8192)
    ap.add_argument(
        "--token-budgets",
        default=None,
        help="comma list of tokens per iteration to sweep, one engine each (e.g. 2048,8192,16384; "
        "default: --max-num-batched-tokens alone); every record carries its budget",
    )
    ap.add_argument(
        "--profile-every",
        type=int,
        default=0,
        help="every N-th throughput iteration runs eagerly with per-operation CUDA events (0: "
        "never; it slows the run down, so throughput runs leave it off)",
    )
    ap.add_argument(
        "--profile-run",
        action="store_true",
        help="after each workload's throughput run, a separate run of it with the torch profiler "
        "over --profile-window iterations (after --profile-skip): device time by kernel kind "
        "(under --tp, rank 0's device)",
    )
    ap.add_argument("--profile-skip", type=int, default=96)
    ap.add_argument("--profile-window", type=int, default=32)
    ap.add_argument(
        "--profile-top",
        type=_positive,
        default=12,
        help="how many of the profiled window's longest kernels each record lists by name",
    )
    ap.add_argument(
        "--tp",
        default="1",
        help="comma list of tensor-parallel degrees, each run on every workload (N > 1: one "
        "worker process per GPU with NCCL, or per CPU rank with gloo)",
    )
    ap.add_argument(
        "--allreduce",
        default="nccl",
        choices=("nccl", "symm_mem"),
        help="tensor parallelism's own all-reduces: nccl, or symm_mem (PyTorch's symmetric-memory "
        "two-shot all-reduce over NVLink peer memory up to --symm-mem-max-bytes, NCCL above)",
    )
    ap.add_argument("--symm-mem-max-bytes", type=int, default=8 << 20)
    ap.add_argument(
        "--warmup-requests",
        type=_count,
        default=0,
        help="before each engine's timed workloads (nanolang's and each vllm / sglang peer's), "
        f"for each workload in turn, this many requests of its prompt lengths with "
        f"{WARMUP_OUTPUT_TOKENS} output tokens each, untimed (compiles the kernels the first "
        "engine on a fresh machine would compile inside its timed runs)",
    )
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument(
        "--async-scheduling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="overlap host scheduling with the device (default: on for CUDA, off on the CPU)",
    )
    ap.add_argument(
        "--mode",
        default="sequential",
        help="comma list of: sequential (dense forward), nanoflow (the pipeline plan of --plan), "
        "nanoflow-sequential (the same nano-batches on one stream); each mode runs every workload",
    )
    ap.add_argument(
        "--plan",
        default="default",
        help="pipeline plan: 'default' (the searched plan set for this model and device when one "
        "is shipped, else the hand-picked plans), a plan JSON or a plan-set JSON (nanolang tune)",
    )
    ap.add_argument(
        "--plan-guard",
        choices=("on", "off"),
        default="on",
        help="nanoflow mode: time each plan-set bucket's plan against the dense forward on the "
        "live engine (--plan-guard-samples pairs, alternating) and run dense where "
        "the plan is not --plan-guard-min-gain faster (on, the default); off: the plan set's "
        "choices as they are. nanoflow-sequential always runs unguarded (it measures the split)",
    )
    ap.add_argument(
        "--plan-guard-samples",
        type=int,
        default=4,
        help="pairs (a plan forward, then a dense one of the same kind) per guarded bucket's "
        "verdict (default 4)",
    )
    ap.add_argument(
        "--plan-guard-recheck-every",
        type=int,
        default=4096,
        help="iterations of a bucket after its verdict until the guard tries it again "
        "(default 4096; 0: never)",
    )
    ap.add_argument(
        "--plan-guard-min-gain",
        type=float,
        default=0.02,
        help="share by which a plan must beat dense to be kept (default 0.02)",
    )
    ap.add_argument(
        "--kv-cache-dtype",
        default="auto",
        help="comma list of KV cache dtypes to run (auto: the model's; fp8: float8 e4m3 with "
        "scales); each runs every workload, nanolang and the vllm / sglang peers alike",
    )
    ap.add_argument(
        "--decode-attention",
        default=EngineConfig().decode_choice().spec(),
        help="comma list of KERNEL:DOT decode-attention choices, one engine each (the Triton "
        "backend; kernels.decode_choice): KERNEL the whole-GPU kernel (auto, gather, tma, "
        "tma-items, gather-64, by-context: per decode batch over a 16-bit cache tma-items on "
        "near-uniform contexts and gather on ragged ones, twice the decode graphs; "
        "by-context@RATIO: near-uniform is max <= RATIO x mean context, a decimal >= 1, 1.05 "
        "without), DOT the dtype an fp8 KV cache is widened to for the dots (fp16, q); "
        "default: the engine's (%(default)s); e.g. gather:q,auto:fp16 compares the widening to "
        "bf16 before 2026-11-30 with today's, auto,by-context@1.02,by-context@1.1 sweeps the ratio",
    )
    ap.add_argument(
        "--linear",
        default="default",
        help="comma list of linear-operator backends, one engine each: default (the registry's: "
        "cublaslt on CUDA), torch (cuBLAS's own pick), cublaslt (cuBLASLt's algorithm measured "
        "for the shape by bench/cublaslt_algos.py, torch's linear where its table has none), "
        "triton (kernels/triton/linear.py's tiles where its measured table lists the shape, "
        "cuBLAS elsewhere)",
    )
    ap.add_argument(
        "--attention-backend",
        default="default",
        help="comma list of paged-attention backends, one engine each: default (the registry's "
        "choice: FlashInfer where installed, else Triton on a GPU, the torch reference on the "
        "CPU), triton, flashinfer, flashinfer-prefill (Triton's decode, FlashInfer's prefill), "
        "torch; each record's attention_backend names what was asked and kernels.paged_attention "
        "what ran",
    )
    ap.add_argument(
        "--rope-kv-store",
        default="fused",
        help="comma list, one engine each: fused (rope and the KV store in one kernel, "
        "kernels' rotary_store_kv, where the backend has it) and unfused (rotary, then store_kv); "
        "each record's kernels.rotary_store_kv says which ran",
    )
    ap.add_argument("--hf-overrides", default=None, help="JSON of config.json fields to replace")
    ap.add_argument(
        "--peer",
        default="none",
        help="comma list of peers run on the same workloads after nanolang: vllm and sglang "
        "(every workload and request, in a subprocess, where importable), hf (transformers' "
        "generate on the first --peer-requests of each fixed workload), none",
    )
    ap.add_argument(
        "--peer-site",
        action="append",
        default=[],
        metavar="ENGINE=DIR",
        help="a staged site directory put first on that peer's PYTHONPATH (repeatable)",
    )
    ap.add_argument(
        "--peer-args",
        default=None,
        help='JSON of extra engine arguments per peer, e.g. \'{"vllm": {"max_num_seqs": 512}}\'',
    )
    ap.add_argument(
        "--peers-first",
        action="store_true",
        help="run the vllm / sglang peers before nanolang's engines instead of after them",
    )
    ap.add_argument(
        "--peer-timeout",
        type=_seconds,
        default=None,
        help="seconds a peer's run (its start and all its workloads) may take; then its process "
        "group is killed, its finished workloads kept, and the benchmark goes on",
    )
    ap.add_argument(
        "--peer-batch-stats",
        action="store_true",
        help="vllm / sglang peers report their largest batch and preemptions (vLLM's statistics "
        "on, SGLang's scheduler log at info level; off by default: each peer at its defaults)",
    )
    ap.add_argument("--peer-requests", type=int, default=64, help="hf peer only")
    ap.add_argument("--peer-batch", type=int, default=64, help="hf peer only")
    ap.add_argument("--out", type=Path, default=None, help="JSON file to write (a list)")
    return ap
