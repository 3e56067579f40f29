"""``python -m runtime.bench`` (also ``nanolang bench``): offline throughput with rooflines."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import itertools
import json
import logging
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kernels.decode_choice import DecodeChoice
from runtime.bench.hf_peer import build_hf_model, run_hf_generate
from runtime.bench.options import build_parser
from runtime.bench.peers import (
    SUBPROCESS_PEERS,
    PeerRun,
    check_engine_args,
    hf_config_dir,
    importable,
    max_model_len,
    parse_peers,
    parse_sites,
    run_peer,
)
from runtime.bench.profile_run import profile_run
from runtime.bench.report import render_table, result_record
from runtime.bench.roofline import (
    Ceilings,
    Network,
    measure_ceilings,
    rooflines,
    workload_roofline,
)
from runtime.bench.throughput import ThroughputResult, run_throughput
from runtime.bench.workloads import (
    WORKLOADS,
    BenchRequest,
    make_requests,
    warmup_requests,
    workload_seed,
)
from runtime.config import ATTENTION_BACKENDS, EngineConfig
from runtime.distributed.executor import TensorParallelRunner
from runtime.llm import LLM
from runtime.model.loader import resolve_model
from runtime.pipeline.guard import GuardConfig


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


MODES = {"sequential": None, "nanoflow": "", "nanoflow-sequential": ":sequential"}


def pipeline_spec(mode: str, plan: str) -> str | None:
    """EngineConfig.pipeline for a benchmark mode."""
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}; choose from {list(MODES)}")
    suffix = MODES[mode]
    return None if suffix is None else plan + suffix


def nanolang_version() -> str:
    """The installed package's version, else the checkout's pyproject.toml (GPU machine)."""
    try:
        return importlib.metadata.version("nanolang")
    except importlib.metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        if not pyproject.exists():
            return "unknown"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])


@dataclass
class EngineRun:
    """What one engine instance measured on one workload."""

    mode: str
    kv_cache_dtype: str
    workload: str
    requests: list[BenchRequest]
    result: ThroughputResult
    profile: dict[str, Any] | None
    facts: dict[str, Any]  # of the engine instance: ceilings, KV size, kernels


def run_nanolang(
    args: argparse.Namespace,
    names: list[tuple[str, int]],
    mode: str,
    spec: str | None,
    kv: str,
    ceilings: Ceilings | None = None,
    tp: int = 1,
    budget: int | None = None,
    decode: DecodeChoice | None = None,
    linear: str | None = None,
    tail: float | None = None,
    fused: bool = True,
    attention: str | None = None,
) -> list[EngineRun]:
    """Every workload on one engine instance (``ceilings``: measured by an earlier instance;
    ``decode``: how its decode attention runs, the engine's default without one; ``linear``:
    the linear operator's backend, the registry's without one; ``fused``: rope and the KV store
    in one kernel; ``attention``: the paged-attention backend, the registry's without one)."""
    decode = decode or EngineConfig().decode_choice()
    overrides = json.loads(args.hf_overrides) if args.hf_overrides else None
    if tp > 1 and args.profile_every:
        raise ValueError("--profile-every runs in one process only (not --tp; --profile-run does)")
    llm = LLM(
        args.model, dtype=args.dtype, device=args.device, load_format=args.load_format,
        hf_overrides=overrides, max_num_seqs=args.max_num_seqs,
        admission_reserve_tokens=args.admission_reserve_tokens,
        **({} if tail is None else {"admission_tail_overcommit": tail}),
        max_num_batched_tokens=budget or args.max_num_batched_tokens,
        enforce_eager=args.enforce_eager,
        async_scheduling=args.async_scheduling, pipeline=spec, kv_cache_dtype=kv,
        tensor_parallel_size=tp, allreduce=args.allreduce,
        symm_mem_max_bytes=args.symm_mem_max_bytes, decode_kernel=decode.kernel_spec(),
        fp8_decode_dot=decode.fp8_dot, linear_backend=linear, fuse_rope_kv_store=fused,
        attention_backend=attention, plan_guard=args.plan_guard == "on" and mode == "nanoflow",
        plan_guard_samples=args.plan_guard_samples, plan_guard_min_gain=args.plan_guard_min_gain,
        plan_guard_recheck_every=args.plan_guard_recheck_every,
    )  # fmt: skip
    engine = llm.engine
    cfg, device, dtype = engine.model_config, engine.device, engine.dtype
    facts = {
        "cfg": cfg, "device": device, **engine_facts(llm),
        "kv_cache_tokens": engine.blocks.allocator.num_blocks * engine.config.block_size,
        "async_scheduling": engine.async_scheduling,
        "ceilings": ceilings or measure_ceilings(device, cfg, dtype),
        "dtype": dtype,
        "max_num_batched_tokens": engine.config.max_num_batched_tokens,
        "pipeline_used": engine.pipeline_summary,
        "decode_attention": engine.config.decode_choice().spec(),  # as the engine built it
        "admission_reserve_tokens": engine.config.admission_reserve_tokens,
        "admission_tail_overcommit": engine.config.admission_tail_overcommit,
        # hand-picked plans are not guarded, nor is a plan set dense everywhere (the model's
        # own forward runs): their records carry no plan_guard
        "plan_guard_on": engine.runner.plan_guarded,
        "attention_backend": attention,  # as asked (None: the registry's choice)
    }  # fmt: skip
    if args.warmup_requests > 0:
        for name, _ in names:
            warm_up(llm, name, args.warmup_requests, cfg.vocab_size, args.scale)
    runs = []
    for name, count in names:
        # distinct prompts per workload, a cold prefix cache: no workload reuses another's KV
        reqs = make_requests(
            WORKLOADS[name], count, cfg.vocab_size, workload_seed(name), args.scale
        )
        if engine.blocks.cache is not None:
            engine.blocks.cache.reset()
        replays_before = graph_replays(llm)
        res = run_throughput(llm, reqs, args.profile_every)
        replays = replays_delta(replays_before, graph_replays(llm))
        print(
            f"[bench] nanolang {mode} kv={kv} tp={tp} decode={decode.spec()}"
            f"{'' if linear is None else ' linear=' + linear}"
            f"{'' if attention is None else ' attention=' + attention}"
            f"{'' if tail is None else f' tail={tail:g}'}"
            f"{'' if fused else ' rope-kv-store=unfused'} "
            f"budget={engine.config.max_num_batched_tokens} {name} x{len(reqs)}: "
            f"{res.total_tokens_per_s:,.0f} total tok/s, max batch {res.max_batch_seqs}, "
            f"preemptions {res.preemptions}, {res.seconds:.1f} s",
            file=sys.stderr, flush=True,
        )  # fmt: skip
        profile = None
        if args.profile_run:
            if engine.blocks.cache is not None:
                engine.blocks.cache.reset()
            try:
                profile = profile_run(
                    llm, reqs, args.profile_skip, args.profile_window, args.profile_top
                )
            except Exception as exc:  # the throughput figures stand without it
                logging.getLogger("runtime.bench").exception("profiled run failed")
                profile = {"error": repr(exc)}
            print(f"[bench] profile {name}: {profile}", file=sys.stderr, flush=True)
        guard = plan_guard_report(llm)
        if facts["plan_guard_on"]:
            print(f"[bench] plan guard after {name}: {guard_summary(guard)}", file=sys.stderr,
                  flush=True)  # fmt: skip
        run_facts = {**facts, "decode_graph_replays": replays, "plan_guard": guard}
        runs.append(EngineRun(mode, kv, name, reqs, res, profile, run_facts))
    llm.shutdown()
    del llm, engine  # free the GPU for the next engine and the peers
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return runs


def graph_replays(llm: LLM) -> dict[str, int] | None:
    """Decode CUDA graph replays so far per plan; None under tensor parallelism (the graphs
    live in the worker processes)."""
    runner = llm.engine.runner
    return None if isinstance(runner, TensorParallelRunner) else runner.graph_replays()


def plan_guard_report(llm: LLM) -> list[dict[str, Any]]:
    """The plan guard's buckets so far (cumulative over the engine's workloads; under tensor
    parallelism rank 0's, the verdicts every rank applies)."""
    return llm.engine.runner.plan_guard_report()


def guard_summary(report: list[dict[str, Any]]) -> str:
    """One line of the guard's buckets: each bucket's verdict, the pairs' median ratio and the
    sides' medians."""
    if not report:
        return "no guarded bucket met"
    return "; ".join(f"{'/'.join(map(str, r['bucket']))} {r['plan']} {r['verdict']}"
                     f"{_guard_times(r)}" for r in report)  # fmt: skip


def _guard_times(r: dict[str, Any]) -> str:
    if r["ratio"] is None:
        return f" ({r['dropped_pairs']} pairs, none of one kind)" if r["dropped_pairs"] else ""
    return (f" (ratio {r['ratio']:.3f} over {r['pairs']} pairs: {r['plan_ms']:.2f} vs dense "
            f"{r['dense_ms']:.2f} ms)")  # fmt: skip


def replays_delta(
    before: dict[str, int] | None, after: dict[str, int] | None
) -> dict[str, int] | None:
    """The replays per plan between two snapshots (plans with none left out)."""
    if before is None or after is None:
        return None
    delta = {k: n - before.get(k, 0) for k, n in after.items()}
    return {k: n for k, n in delta.items() if n > 0}


def warm_up(llm: LLM, workload: str, count: int, vocab_size: int, scale: float) -> None:
    """``count`` untimed requests with ``workload``'s prompt lengths (another seed than its timed
    ones) and a few output tokens each, then a cold prefix cache again."""
    res = run_throughput(llm, warmup_requests(workload, count, vocab_size, scale))
    print(f"[bench] warm-up: {count} requests of {workload}, {res.seconds:.1f} s (untimed)",
          file=sys.stderr, flush=True)  # fmt: skip
    if llm.engine.blocks.cache is not None:
        llm.engine.blocks.cache.reset()


def parse_tp(text: str) -> list[int]:
    """``--tp``: a comma list of tensor-parallel degrees, each run on every workload."""
    try:
        tps = [int(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"--tp takes a comma list of integers, got {text!r}") from None
    if not tps or min(tps) < 1:
        raise ValueError(f"--tp degrees must be >= 1, got {text!r}")
    return tps


def engine_facts(llm: LLM) -> dict[str, Any]:
    """Element sizes, kernels and (under tensor parallelism) the network of an engine."""
    runner = llm.engine.runner
    if isinstance(runner, TensorParallelRunner):
        r0 = runner.ready[0]
        network = Network(len(runner.ready), r0.allreduce_latency_s, r0.allreduce_bytes_per_s)
        return {"kv_elem": r0.kv_elem, "weight_elem": r0.weight_elem,
                "kernels": dict(r0.backends), "network": network,
                "pipeline_plans": r0.pipeline, "network_search": r0.network_search,
                "allreduce": r0.allreduce}  # fmt: skip
    return {
        "kv_elem": runner.kv_caches[0][0].element_size(),
        "weight_elem": runner.model.embed_tokens.element_size(),
        "kernels": dict(runner.ops.backends),
        "network": Network(),
    }


def peer_device_name() -> str:
    """The GPU the peers start on (their first), or ``cpu``."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def check_peers(args: argparse.Namespace) -> None:
    """Exit naming any ``--peer-args`` key (or TP argument) an importable peer does not take."""
    peers = [p for p in parse_peers(args.peer) if p in SUBPROCESS_PEERS]
    extra = json.loads(args.peer_args) if args.peer_args else {}
    sites = parse_sites(args.peer_site)
    for peer in peers:
        if not importable(peer, sites.get(peer)):
            continue  # run_peers says so and skips it
        for tp in parse_tp(args.tp):
            run = PeerRun(peer, "auto", sites.get(peer), extra.get(peer, {}), tp)
            error = check_engine_args(run)
            if error is not None:
                raise SystemExit(f"runtime.bench: {error}")


def run_peers(
    args: argparse.Namespace,
    names: list[tuple[str, int]],
    command: str,
    done: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """vLLM / SGLang over the same workloads and requests, each in a subprocess, at every
    ``--tp`` degree. With ``--out``, the file gets ``done`` plus the peers' records after each peer
    run, and a peer run writes its finished workloads to ``OUT.<peer>-tp<N>-<kv>.partial.json``
    until it ends (what is left there if the run is stopped)."""
    peers = [p for p in parse_peers(args.peer) if p in SUBPROCESS_PEERS]
    if not peers:
        return []
    sites = parse_sites(args.peer_site)
    extra = json.loads(args.peer_args) if args.peer_args else {}
    overrides = json.loads(args.hf_overrides) if args.hf_overrides else None
    _, cfg = resolve_model(args.model, overrides)
    jobs = [
        {"workload": n, "num_requests": count, "seed": workload_seed(n), "scale": args.scale}
        for n, count in names
    ]  # fmt: skip
    max_len = max_model_len(jobs, cfg.vocab_size, cfg.max_position_embeddings)
    warmup = args.warmup_requests
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = hf_config_dir(args.model, overrides, Path(tmp) / "model")
        for peer in peers:
            if not importable(peer, sites.get(peer)):
                print(f"peer {peer}: not importable here, skipped", file=sys.stderr)
                continue
            for tp in parse_tp(args.tp):
                for kv in args.kv_cache_dtype.split(","):
                    run = PeerRun(peer, kv, sites.get(peer), extra.get(peer, {}), tp)
                    partial = None
                    if args.out is not None:
                        partial = args.out.with_name(
                            f"{args.out.stem}.{peer}-tp{tp}-{kv}.partial.json"
                        )
                    try:
                        new = run_peer(run, model_dir, jobs, max_len, partial, args.peer_timeout,
                                       warmup, args.peer_batch_stats)  # fmt: skip
                    except KeyboardInterrupt:  # e.g. a time limit's SIGINT: keep its finished
                        if args.out is not None and partial is not None and partial.exists():
                            kept = json.loads(partial.read_text())
                            records += peer_records(args, command, kept, stopped=True)
                            write_records(args.out, [*done, *records])
                            partial.unlink()
                        raise
                    records += peer_records(args, command, new)
                    if args.out is not None:
                        write_records(args.out, [*done, *records])
                        if partial is not None:
                            partial.unlink(missing_ok=True)
    return records


def peer_records(
    args: argparse.Namespace, command: str, new: list[dict[str, Any]], stopped: bool = False
) -> list[dict[str, Any]]:
    """A peer worker's records with the run's model, device, date and command; ``stopped``: the
    benchmark was interrupted while this peer ran (its later workloads are missing)."""
    device = peer_device_name()  # after the peer: no CUDA context beside it
    flag = {"peer_run_interrupted": True} if stopped else {}
    return [{"model": args.model, "device": device, "date": dt.date.today().isoformat(),
             "command": command, **rec, **flag} for rec in new]  # fmt: skip


def token_budgets(args: argparse.Namespace) -> list[int]:
    """The tokens-per-iteration budgets to run, one engine each."""
    if not args.token_budgets:
        return [args.max_num_batched_tokens]
    try:
        budgets = [int(b) for b in args.token_budgets.split(",")]
    except ValueError:
        raise SystemExit(f"--token-budgets takes a comma list of integers, got "
                         f"{args.token_budgets!r}") from None  # fmt: skip
    if any(b < 1 for b in budgets):
        raise SystemExit(f"--token-budgets must be positive, got {args.token_budgets!r}")
    return budgets


def check_plan_guard(args: argparse.Namespace) -> None:
    """``--plan-guard-samples``, ``-min-gain`` and ``-recheck-every`` checked with the other
    options, before any peer (``--peers-first``) or engine runs."""
    try:
        GuardConfig(args.plan_guard_samples, args.plan_guard_min_gain,
                    args.plan_guard_recheck_every)  # fmt: skip
    except ValueError as exc:
        raise SystemExit(
            f"--plan-guard-samples / --plan-guard-min-gain / --plan-guard-recheck-every: {exc}"
        ) from None


def decode_choices(text: str) -> list[DecodeChoice]:
    """``--decode-attention``: a comma list of KERNEL:DOT (KERNEL may be by-context@RATIO), one
    engine each; all checked before any engine runs."""
    try:
        return [DecodeChoice.parse(item) for item in text.split(",") if item.strip()] or [
            EngineConfig().decode_choice()
        ]
    except ValueError as exc:
        raise SystemExit(f"--decode-attention: {exc}") from None


def attention_backends(text: str) -> list[str | None]:
    """``--attention-backend``: a comma list, one engine each (``default``: None, the registry's
    choice); names are checked here, before any engine runs, and whether a named backend is
    available when its engine builds its operators."""
    names = [item.strip() for item in text.split(",") if item.strip()] or ["default"]
    unknown = [n for n in names if n != "default" and n not in ATTENTION_BACKENDS]
    if unknown:
        raise SystemExit(f"--attention-backend: unknown backend {unknown[0]!r}; choose from "
                         f"default, {', '.join(ATTENTION_BACKENDS)}")  # fmt: skip
    return [None if name == "default" else name for name in names]


def linear_backends(text: str) -> list[str | None]:
    """``--linear``: a comma list of backend names, one engine each (``default``: None, the
    registry's choice); the names are checked when each engine builds its operators."""
    names = [item.strip() for item in text.split(",") if item.strip()] or ["default"]
    return [None if name == "default" else name for name in names]


def rope_kv_stores(text: str) -> list[bool]:
    """``--rope-kv-store``: a comma list of fused / unfused, one engine each (True: fused)."""
    names = [item.strip() for item in text.split(",") if item.strip()] or ["fused"]
    if not set(names) <= {"fused", "unfused"}:
        raise SystemExit(f"--rope-kv-store takes fused and unfused, got {text!r}")
    return [name == "fused" for name in names]


def tail_overcommits(text: str | None) -> list[float | None]:
    """``--admission-tail-overcommit``: a comma list of shares in [0, 1], one engine each
    (None: the engine's default), checked before any engine runs."""
    if text is None:
        return [None]
    try:
        shares: list[float | None] = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        message = f"--admission-tail-overcommit: {text!r} is not a comma list of numbers"
        raise SystemExit(message) from None
    if not all(share is not None and 0 <= share <= 1 for share in shares):  # before any engine
        raise SystemExit(f"--admission-tail-overcommit: {text!r}: each share is in [0, 1]")
    return shares or [None]


def parse_workloads(text: str, num_requests: int) -> list[tuple[str, int]]:
    """``--workloads``: ``all`` or a comma list of NAME or NAME:REQUESTS (default: ``num_requests``)
    -> (workload, requests) pairs, in order."""
    items = list(WORKLOADS) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    jobs = []
    for item in items:
        name, sep, count = item.partition(":")
        if name not in WORKLOADS:
            raise SystemExit(f"unknown workload {name!r}; choose from {list(WORKLOADS)}")
        if sep and not (count.isdigit() and int(count) > 0):
            raise SystemExit(f"--workloads: {item!r} needs a positive request count after ':'")
        jobs.append((name, int(count) if sep else num_requests))
    return jobs


def run(args: argparse.Namespace, command: str) -> list[dict[str, Any]]:
    names = parse_workloads(args.workloads, args.num_requests)
    peers = parse_peers(args.peer)
    modes = args.mode.split(",")
    specs = {mode: pipeline_spec(mode, args.plan) for mode in modes}
    kv_dtypes = args.kv_cache_dtype.split(",")
    budgets = token_budgets(args)
    decodes = decode_choices(args.decode_attention)
    check_plan_guard(args)
    linears = linear_backends(args.linear)
    tails = tail_overcommits(args.admission_tail_overcommit)
    fusions = rope_kv_stores(args.rope_kv_store)
    attentions = attention_backends(args.attention_backend)
    runs: list[EngineRun] = []
    tps = parse_tp(args.tp)
    engines, version = 0, nanolang_version()
    check_peers(args)  # a peer argument it does not take fails now, not after nanolang's runs
    # --peers-first: the peers before nanolang (their records first in the file too)
    peer_records = run_peers(args, names, command, []) if args.peers_first else []
    for tp in tps:
        for mode in modes:
            for kv in kv_dtypes:
                combos = itertools.product(budgets, decodes, linears, tails, fusions, attentions)
                for budget, decode, linear, tail, fused, attention in combos:
                    ceilings = runs[0].facts["ceilings"] if runs else None  # one per run
                    new = run_nanolang(args, names, mode, specs[mode], kv, ceilings, tp, budget,
                                       decode, linear, tail, fused, attention)  # fmt: skip
                    for r in new:
                        r.facts = {**r.facts, "engine_index": engines}
                    runs += new
                    engines += 1
                    if args.out is not None:  # what has run so far, should a later engine fail
                        partial = [record_of(args, r, specs, command, version, None) for r in runs]
                        write_records(args.out, [*peer_records, *partial])
    device = runs[0].facts["device"]
    dtype = runs[0].facts["dtype"]
    peer_net = build_hf_model(args.model, device, dtype) if "hf" in peers else None
    records = []
    for r in runs:
        peer = None
        first = r.facts["engine_index"] == 0
        if peer_net is not None and WORKLOADS[r.workload].fixed and first:
            peer = run_hf_generate(peer_net, r.requests[: args.peer_requests], args.peer_batch,
                                   device)  # fmt: skip
        records.append(record_of(args, r, specs, command, version, peer))
    del peer_net
    gc.collect()
    if args.peers_first:
        return [*peer_records, *records]
    return records + run_peers(args, names, command, records)


def record_of(
    args: argparse.Namespace,
    r: EngineRun,
    specs: dict[str, str | None],
    command: str,
    version: str,
    peer: Any,
) -> dict[str, Any]:
    """The JSON record of one engine run of one workload."""
    res, facts = r.result, r.facts
    cfg, ceilings = facts["cfg"], facts["ceilings"]
    lengths = [(len(q.prompt_token_ids), q.output_len) for q in r.requests]
    record = result_record(
        model=args.model, device_name=device_name(facts["device"]), command=command,
        workload=r.workload, mode=r.mode, async_scheduling=facts["async_scheduling"],
        pipeline=specs[r.mode], pipeline_used=facts["pipeline_used"],
        engine_index=facts["engine_index"], num_requests=len(r.requests), result=res,
        roof=rooflines(res.records, cfg, ceilings, facts["kv_elem"],
                       res.prompt_tokens + res.output_tokens, facts["weight_elem"],
                       facts["network"]),
        workload_roof=workload_roofline(lengths, cfg, ceilings, facts["kv_elem"],
                                        facts["weight_elem"], facts["kv_cache_tokens"],
                                        facts["network"].tp),
        network=facts["network"],
        ceilings=ceilings, kernels=facts["kernels"], peer=peer, version=version,
        kv_cache_tokens=facts["kv_cache_tokens"], kv_cache_dtype=r.kv_cache_dtype,
        profile=r.profile, max_num_batched_tokens=facts["max_num_batched_tokens"],
    )  # fmt: skip
    record["warmup_requests"] = args.warmup_requests
    record["decode_attention"] = facts["decode_attention"]
    record["attention_backend"] = facts.get("attention_backend")  # asked; None: the registry's
    record["admission_reserve_tokens"] = facts["admission_reserve_tokens"]
    record["admission_tail_overcommit"] = facts["admission_tail_overcommit"]
    if facts.get("allreduce"):  # tensor parallelism: the group's own all-reduce
        record["allreduce"] = facts["allreduce"]
    if facts.get("decode_graph_replays") is not None:  # which plan each decode replay ran
        record["decode_graph_replays"] = facts["decode_graph_replays"]
    if facts.get("plan_guard_on"):  # per guarded bucket: plan, samples, times, verdict
        record["plan_guard"] = facts.get("plan_guard") or []
    if facts.get("pipeline_plans"):  # tensor parallelism's pipeline: what ran, as searched
        record["pipeline_plans"] = facts["pipeline_plans"]
        record["network_search"] = facts.get("network_search") or None
    return record


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the benchmark as Ctrl-C does: the engine or peer that is running is
    stopped and every finished workload is kept in ``--out``. Installed explicitly (and the
    previous handlers restored after) because a time limit's ``timeout`` sends SIGTERM unless told
    otherwise, and a process started in the background by a non-interactive shell inherits SIGINT
    ignored: either would otherwise end the run without writing what it finished."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    command = "python -m runtime.bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    with stopped_by_signals():
        return execute(args, command)


TABLE_WIDTH = 200  # columns of the table when standard error is not a terminal (a log, a pipe)


def table_console() -> Any:
    """Where the summary table goes: standard error, at the terminal's width, or at
    ``TABLE_WIDTH`` columns in a log or a pipe (rich would take 80 there and cut every cell)."""
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=TABLE_WIDTH)


def execute(args: argparse.Namespace, command: str) -> int:
    """Run the benchmark, print a table on stderr and the JSON records on stdout."""
    try:
        records = run(args, command)
    except (ValueError, OSError, MemoryError) as exc:  # bad model, plan, device or dtype
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table_console().print(render_table(records))
    text = json.dumps(records, indent=2)
    if args.out is not None:
        write_records(args.out, records)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
