"""``python -m runtime.bench`` (also ``nanolang bench``): offline throughput with rooflines."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import shlex
import sys
from typing import Any

import torch

from runtime.bench.hf_peer import build_hf_model, run_hf_generate
from runtime.bench.options import build_parser
from runtime.bench.report import render_table, result_record
from runtime.bench.roofline import measure_ceilings, rooflines
from runtime.bench.throughput import run_throughput
from runtime.bench.workloads import WORKLOADS, make_requests
from runtime.llm import LLM


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


MODES = {"sequential": None, "nanoflow": "", "nanoflow-sequential": ":sequential"}


def pipeline_spec(mode: str, plan: str) -> str | None:
    """EngineConfig.pipeline for a benchmark mode."""
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}; choose from {list(MODES)}")
    suffix = MODES[mode]
    return None if suffix is None else plan + suffix


def run(args: argparse.Namespace, command: str) -> list[dict[str, Any]]:
    names = list(WORKLOADS) if args.workloads == "all" else args.workloads.split(",")
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    overrides = json.loads(args.hf_overrides) if args.hf_overrides else None
    modes = args.mode.split(",")
    specs = {mode: pipeline_spec(mode, args.plan) for mode in modes}
    results = {}
    async_by_mode: dict[str, bool] = {}
    for mode in modes:
        llm = LLM(
            args.model, dtype=args.dtype, device=args.device, load_format=args.load_format,
            hf_overrides=overrides, max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens, enforce_eager=args.enforce_eager,
            async_scheduling=args.async_scheduling, pipeline=specs[mode],
        )  # fmt: skip
        engine = llm.engine
        async_by_mode[mode] = engine.async_scheduling
        cfg, device, dtype = engine.model_config, engine.device, engine.dtype
        elem = engine.runner.kv_caches[0][0].element_size()
        kernels = dict(engine.ops.backends)
        ceilings = measure_ceilings(device, cfg, dtype)
        for seed, name in enumerate(names):
            # distinct prompts per workload, a cold prefix cache: no workload reuses another's KV
            reqs = make_requests(
                WORKLOADS[name], args.num_requests, cfg.vocab_size, 1 + seed, args.scale
            )
            if engine.blocks.cache is not None:
                engine.blocks.cache.reset()
            results[mode, name] = (reqs, run_throughput(llm, reqs, args.profile_every))
        del llm, engine  # free the GPU for the next mode and the peer
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    peer_net = build_hf_model(args.model, device, dtype) if args.peer == "hf" else None
    records = []
    for (mode, name), (reqs, res) in results.items():
        peer = None
        if peer_net is not None and WORKLOADS[name].fixed and mode == modes[0]:
            peer = run_hf_generate(peer_net, reqs[: args.peer_requests], args.peer_batch, device)
        records.append(result_record(
            model=args.model, device_name=device_name(device), command=command, workload=name,
            mode=mode, async_scheduling=async_by_mode[mode], pipeline=specs[mode],
            num_requests=len(reqs), result=res,
            roof=rooflines(
                res.records, cfg, ceilings, elem, res.prompt_tokens + res.output_tokens
            ),
            ceilings=ceilings,
            kernels=kernels, peer=peer,
        ))  # fmt: skip
    return records


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    command = "python -m runtime.bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    return execute(args, command)


def execute(args: argparse.Namespace, command: str) -> int:
    """Run the benchmark, print a table on stderr and the JSON records on stdout."""
    try:
        records = run(args, command)
    except (ValueError, OSError, MemoryError) as exc:  # bad model, plan, device or dtype
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from rich.console import Console

    Console(stderr=True).print(render_table(records))
    text = json.dumps(records, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
