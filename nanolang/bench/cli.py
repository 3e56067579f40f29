"""Command-line options of ``nanolang bench --programs`` and ``python -m nanolang.bench``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(ap: argparse.ArgumentParser, standalone: bool = False) -> None:
    """The program benchmark's options; ``standalone`` adds the ones ``nanolang bench`` shares
    with the engine benchmark (model, device, dtype, batch limits, scale, out)."""
    if standalone:
        ap.add_argument("--model", default="llama-3-8b")
        ap.add_argument("--device", default="auto")
        ap.add_argument("--dtype", default="auto")
        ap.add_argument("--scale", type=float, default=1.0, help="shrink lengths (tests)")
        ap.add_argument("--max-num-seqs", type=int, default=256)
        ap.add_argument("--max-num-batched-tokens", type=int, default=8192)
        ap.add_argument("--enforce-eager", action="store_true")
        ap.add_argument("--async-scheduling", action=argparse.BooleanOptionalAction, default=None)
        ap.add_argument("--out", type=Path, default=None, help="JSON file to write (a list)")
        ap.add_argument("--hf-overrides", default=None, help="JSON of config fields to replace")
    ap.add_argument(
        "--programs",
        nargs="?",
        const="all",
        default=None if not standalone else "all",
        help="run the program benchmark: 'all' or a comma list of few_shot, self_consistency, "
        "tree_of_thought, chat, react, judge (model: a preset with random weights and the demo "
        "tokenizer, a directory, or 'demo')",
    )
    ap.add_argument("--instances", type=int, default=1000, help="instances per program")
    ap.add_argument(
        "--gen-scale",
        type=float,
        default=None,
        help="shrink the generation lengths alone (default: --scale); prompts keep their size",
    )
    ap.add_argument(
        "--naive-instances",
        type=int,
        default=4,
        help="instances the naive mode runs (one call at a time: a sample is enough for its rate)",
    )
    ap.add_argument("--modes", default="naive,independent,graph")
    ap.add_argument(
        "--lockstep",
        action="store_true",
        help="step the engine on the event loop whenever every instance waits on it: the "
        "schedule (iterations, batches, prefill) no longer depends on the host's speed",
    )
    ap.add_argument(
        "--gc-paused",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="turn Python's garbage collector off while each mode runs (collected before)",
    )
    ap.add_argument(
        "--warmup-instances",
        type=int,
        default=8,
        help="instances run once, untimed, before the first measured mode",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run every mode this many times, the modes alternating; each record is its "
        "mode's median run, with every run's seconds (for modes of a few seconds, whose "
        "single runs vary)",
    )
    ap.add_argument("--memory-pressure", choices=["off", "on", "both"], default="both")
    ap.add_argument(
        "--pressure-fraction",
        type=float,
        default=0.25,
        help="under memory pressure, KV cache = this share of all instances' peak demand",
    )


def config(args: argparse.Namespace, command: str) -> Any:
    from nanolang.bench.programs import PROGRAMS
    from nanolang.bench.runner import BenchConfig

    names = tuple(PROGRAMS) if args.programs == "all" else tuple(args.programs.split(","))
    pressure = {"off": (False,), "on": (True,), "both": (False, True)}[args.memory_pressure]
    return BenchConfig(
        programs=names, modes=tuple(args.modes.split(",")), pressure=pressure,
        instances=args.instances, naive_instances=min(args.naive_instances, args.instances),
        scale=args.scale, gen_scale=args.gen_scale, pressure_fraction=args.pressure_fraction,
        model=args.model,
        device=args.device, dtype=args.dtype, max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens, enforce_eager=args.enforce_eager,
        async_scheduling=args.async_scheduling, lockstep=args.lockstep, command=command,
        pause_gc=args.gc_paused, warmup_instances=args.warmup_instances, repeats=args.repeats,
        hf_overrides=json.loads(args.hf_overrides) if args.hf_overrides else None,
    )  # fmt: skip


def execute(args: argparse.Namespace, command: str) -> int:
    """Run it, print a table on stderr and the records as JSON on stdout (and to ``--out``)."""
    import logging

    from nanolang.bench.runner import run_programs, speedups
    from nanolang.bench.table import render

    logging.basicConfig(stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("nanolang.bench").setLevel(logging.INFO)

    def save(records: list[dict[str, Any]]) -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(records, indent=2) + "\n")

    try:
        records = run_programs(config(args, command), save)
    except (ValueError, OSError, MemoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(records, speedups(records)), file=sys.stderr)
    save(records)
    print(json.dumps(records, indent=2))
    return 0
