"""Peer engines (vLLM, SGLang) in the same benchmark run, each in a subprocess.

A peer runs only where it is importable (on the GPU machine: staged by ../shared/tools/peers/);
otherwise the benchmark says so on stderr and goes on. ``--peer-site vllm=/tmp/vsite`` puts a
staged site directory first on that peer's ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.bench.peer_worker import CANNOT_CHECK
from runtime.bench.workloads import WORKLOADS, make_requests
from runtime.config import PRESET_DIR, read_json
from runtime.model.loader import resolve_model

logger = logging.getLogger("runtime.bench")

SUBPROCESS_PEERS = ("vllm", "sglang")
MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
               "Qwen2ForCausalLM": "qwen2"}  # fmt: skip


# Set in a peer's process unless the caller set them: NVLink multicast stays off on machines where
# using it can take the GPUs out of service (NCCL's NVLS, PyTorch's and NVSHMEM's multicast, vLLM's
# symmetric-memory all-reduce, which uses multimem), and vLLM samples without FlashInfer, which is
# not staged with it.
PEER_ENV = {
    "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
    "VLLM_ALLREDUCE_USE_SYMM_MEM": "0", "VLLM_USE_FLASHINFER_SAMPLER": "0",
    "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1",
}  # fmt: skip
# each peer's own name for its tensor-parallel degree
TP_ARG = {"vllm": "tensor_parallel_size", "sglang": "tp_size"}


@dataclass(frozen=True)
class PeerRun:
    engine: str
    kv_cache_dtype: str
    site: str | None  # a directory put first on the worker's PYTHONPATH
    engine_args: dict[str, Any]
    tensor_parallel_size: int = 1

    def job_engine_args(self) -> dict[str, Any]:
        """The engine's arguments: the tensor-parallel degree (when above 1) under the peer's own
        name, then the user's ``--peer-args`` (which may set it too)."""
        tp = self.tensor_parallel_size
        return {**({TP_ARG[self.engine]: tp} if tp > 1 else {}), **self.engine_args}


def parse_peers(spec: str) -> list[str]:
    """``"vllm,sglang,hf"`` -> names, checked; ``"none"`` or empty -> []."""
    names = [p.strip() for p in spec.split(",") if p.strip() and p.strip() != "none"]
    bad = [n for n in names if n not in (*SUBPROCESS_PEERS, "hf")]
    if bad:
        raise ValueError(f"unknown peer(s) {bad}; choose from vllm, sglang, hf, none")
    return names


def parse_sites(items: list[str]) -> dict[str, str]:
    sites = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in SUBPROCESS_PEERS:
            raise ValueError(f"--peer-site takes ENGINE=DIR with ENGINE in {SUBPROCESS_PEERS}")
        sites[name] = path
    return sites


def importable(engine: str, site: str | None) -> bool:
    """Whether the peer's package can be found (in ``site`` or on this interpreter's path)."""
    if site is not None and (Path(site) / engine).is_dir():
        return True
    return importlib.util.find_spec(engine) is not None


def hf_config_dir(model: str, hf_overrides: dict[str, Any] | None, into: Path) -> Path:
    """A model directory a peer can read: the model's own, or a preset's config.json written out
    (random weights: peers run with ``load_format="dummy"``), with overrides applied."""
    path, _ = resolve_model(model, hf_overrides)
    cfg = read_json(path / "config.json" if path else PRESET_DIR / f"{model}.json")
    if path is not None and not hf_overrides:
        return path
    cfg.update(hf_overrides or {})
    cfg.setdefault("model_type", MODEL_TYPES.get(cfg["architectures"][0], "llama"))
    into.mkdir(parents=True, exist_ok=True)
    (into / "config.json").write_text(json.dumps(cfg, indent=1))
    return into


# tokens past the longest prompt + output: SGLang 0.5.17 stops a request 2 tokens short when its
# context length is exactly that sum (1024/512 at 1,536: 510 output tokens per request)
CONTEXT_MARGIN = 16


def max_model_len(workloads: list[dict[str, Any]], vocab_size: int, limit: int) -> int:
    """The longest prompt + output among the jobs plus ``CONTEXT_MARGIN``, rounded up to 256 and
    capped at ``limit``."""
    longest = 0
    for w in workloads:
        reqs = make_requests(
            WORKLOADS[w["workload"]], w["num_requests"], vocab_size, w["seed"], w["scale"]
        )
        longest = max(longest, *(len(r.prompt_token_ids) + r.output_len for r in reqs))
    return min(limit, 256 * math.ceil((longest + CONTEXT_MARGIN) / 256))


def worker_env(run: PeerRun) -> dict[str, str]:
    """The peer worker's environment: the worker imports runtime.bench from this checkout, the
    peer from its site."""
    env = {**PEER_ENV, **os.environ}
    paths = [p for p in (run.site, str(Path(__file__).resolve().parents[2])) if p]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_peer(
    run: PeerRun,
    model_dir: Path,
    workloads: list[dict[str, Any]],
    max_len: int,
    partial: Path | None = None,
    timeout: float | None = None,
    warmup_requests: int = 0,
    batch_stats: bool = False,
) -> list[dict[str, Any]]:
    """Run one peer over the workloads in a subprocess; its records (those of the workloads that
    finished if it failed, was stopped or outlived ``timeout`` seconds). ``partial``: where the
    worker writes its records after each workload (kept: a run cut short still leaves the
    finished ones there). ``warmup_requests``: untimed requests the peer serves first, the same
    ones nanolang's engines warm up on (``runtime.bench.workloads.warmup_requests``).
    ``batch_stats``: the peer reports its largest batch (``runtime.bench.peer_worker``)."""
    job = {
        "engine": run.engine, "model_dir": str(model_dir), "kv_cache_dtype": run.kv_cache_dtype,
        "max_model_len": max_len, "workloads": workloads, "engine_args": run.job_engine_args(),
        "tensor_parallel_size": run.tensor_parallel_size, "warmup_requests": warmup_requests,
        "batch_stats": batch_stats,
    }  # fmt: skip
    env = worker_env(run)
    with tempfile.TemporaryDirectory() as tmp:
        job_path = Path(tmp) / "job.json"
        out_path = partial or Path(tmp) / "out.json"
        out_path.unlink(missing_ok=True)
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "runtime.bench.peer_worker", str(job_path), str(out_path)]
        status = _run_group(cmd, env, timeout)
        records: list[dict[str, Any]] = (
            json.loads(out_path.read_text()) if out_path.exists() else []
        )
        if status != 0:
            logger.warning("peer %s failed (%s) after %d of %d workloads; see its output above",
                           run.engine, status, len(records), len(workloads))  # fmt: skip
        return records


def check_engine_args(run: PeerRun, timeout: float = 180.0) -> str | None:
    """Whether the peer takes every argument of ``run`` (``--peer-args``, its TP degree): None,
    or the worker's message naming those it does not take. Run before any engine, so that a
    misspelt argument fails in seconds, not after nanolang's workloads have taken the device."""
    keys = list(run.job_engine_args())
    if not keys:
        return None
    env = worker_env(run)
    cmd = [sys.executable, "-m", "runtime.bench.peer_worker", "--check", run.engine,
           json.dumps(keys)]  # fmt: skip
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"peer {run.engine}: checking its arguments took over {timeout:g} s"
    if done.returncode == 0:
        return None
    if done.returncode == CANNOT_CHECK:
        logger.warning("peer %s: %s", run.engine, done.stderr.strip())
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return f"peer {run.engine}: {lines[-1] if lines else f'exit {done.returncode}'}"


def _run_group(cmd: list[str], env: dict[str, str], timeout: float | None) -> int | str:
    """Run ``cmd`` in a process group of its own; its exit status, or ``"timed out"`` when it
    outlived ``timeout`` seconds. On a time-out or an interruption the whole group is killed: a
    peer's own workers (vLLM's per-GPU processes) must not keep the GPUs from what runs next."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return f"timed out after {timeout:g} s"
    except BaseException:
        _kill_group(proc)
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
