"""Command-line options of ``nanolang tune`` (argparse only: importing this loads no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = parser or argparse.ArgumentParser(prog="python -m runtime.tune", description=__doc__)
    ap.add_argument("--model", default="llama-3-8b", help="preset or model directory")
    ap.add_argument("--load-format", default="dummy", help="dummy: random weights (timing only)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--kv-cache-dtype", choices=["auto", "fp8"], default="auto",
                    help="the KV cache attention is profiled over (recorded in the profile and "
                    "the plan set; the engine uses plan sets of its own kv_cache_dtype)",
                    )  # fmt: skip
    ap.add_argument("--profile", type=Path, default=None,
                    help="reuse this profile JSON instead of measuring")  # fmt: skip
    ap.add_argument("--reprofile", choices=["attention", "decode-attention"], default=None,
                    help="with --profile: measure only attention (both phases, or decodes) and "
                    "its interference with this build's kernels and --kv-cache-dtype, keep the "
                    "stored profile's other timings, search the merged profile (after an "
                    "attention kernel changed)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None,
                    help="directory for profile.json, planset.json and the plans (default: "
                    "runtime/pipeline/plans/searched/<model>-<device>, where --mode nanoflow "
                    "finds them)")  # fmt: skip
    ap.add_argument("--profile-only", action="store_true",
                    help="measure and write profile.json, no search (search it elsewhere with "
                    "--profile)")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="a tiny profile grid (tests, CPU)")
    ap.add_argument("--kv-gb", type=float, default=None, help="KV buffer for attention timings")
    ap.add_argument("--tokens", default=None,
                    help="profile grid: comma list of nano-batch rows of the non-attention "
                    "operations (default 16,32,...,2048)")  # fmt: skip
    ap.add_argument(
        "--attention-tokens",
        default=None,
        help="comma list of attention rows: decodes, or one prefill chunk's rows",
    )
    ap.add_argument("--contexts", default=None, help="comma list of attention contexts")
    ap.add_argument("--interference-tokens", default=None, help="comma list of rows")
    ap.add_argument(
        "--green",
        action="store_true",
        help="also green-context partitions (default: plain streams and capped grids; green "
        "pairs faulted on the H200, docs/performance.md)",
    )
    ap.add_argument(
        "--attention-sms",
        default=None,
        help="comma list of attention's SM budgets (default: every multiple of 8)",
    )
    ap.add_argument(
        "--carve-sms",
        default=None,
        help="comma list of attention's SM budgets at which the other operations are also "
        "timed with their GEMMs aimed at the rest of the SMs (cuBLASLt's SM count target): "
        "the search's carve:N layouts (default: none)",
    )
    ap.add_argument(
        "--decode-points",
        default=None,
        help="bucket grid: comma list of decode counts (default 0,64,128,256,512,1024)",
    )
    ap.add_argument(
        "--prefill-points",
        default=None,
        help="comma list of prefill tokens (default 0,512,1024,2048)",
    )
    ap.add_argument(
        "--context-points",
        default=None,
        help="comma list of mean contexts (default 512,1024,2048,4096)",
    )
    ap.add_argument("--solver", choices=["auto", "gurobi", "highs"], default="auto")
    ap.add_argument("--max-nano-batches", type=int, default=4)
    ap.add_argument("--granules", type=int, default=8, help="nano-batch boundary grid")
    ap.add_argument("--margin", type=float, default=0.05, help="a plan must beat dense by this")
    ap.add_argument("--explore", type=float, default=0.0,
                    help="also keep pipelines predicted up to this fraction slower than dense, as "
                    "candidates to measure (runtime.tune.verify --buckets candidates)")  # fmt: skip
    ap.add_argument("--max-tokens", type=int, default=None,
                    help="shapes of more rows stay dense, not searched (default 4096; the engine's "
                    "token budget is 8192, and its mixed iterations reach it)")  # fmt: skip
    ap.add_argument("--time-limit", type=float, default=30.0, help="seconds per MILP")
    ap.add_argument("--jobs", type=int, default=1, help="buckets searched in parallel processes")
    return ap
