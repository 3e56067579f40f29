"""``python -m runtime.tune`` (also ``nanolang tune``): profile a model's layer operations on
this device, search NanoFlow pipelines per batch-shape bucket, write the plan set."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from typing import Any

from runtime.tune.options import build_parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    command = "python -m runtime.tune " + shlex.join(sys.argv[1:] if argv is None else argv)
    return execute(args, command)


def execute(args: argparse.Namespace, command: str) -> int:
    """Run the tuner; a summary on stderr, the plan set's path on stdout."""
    from runtime.pipeline.plan import PlanError
    from runtime.tune.milp import MilpError, Solver
    from runtime.tune.profiler import QUICK, ProfileConfig
    from runtime.tune.profiles import ProfileError
    from runtime.tune.search import QUICK_SEARCH, SearchConfig
    from runtime.tune.tuner import measure, tune

    try:
        pcfg = _profile_config(args, QUICK if args.quick else ProfileConfig())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.reprofile is not None and args.profile is None:
        print("error: --reprofile needs --profile (the stored profile it updates)", file=sys.stderr)
        return 2
    stored: Any = args.profile
    if args.reprofile is not None:
        try:
            stored = _reprofiled(args, pcfg, command)
        except (ValueError, OSError, MemoryError) as exc:  # ProfileError is a ValueError
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.profile_only:
        if args.out is None:
            print("error: --profile-only needs --out", file=sys.stderr)
            return 2
        try:
            prof = stored if args.reprofile is not None else measure(
                args.model, pcfg, command, load_format=args.load_format, device=args.device,
                dtype=args.dtype, kv_cache_dtype=args.kv_cache_dtype)  # fmt: skip
        except (ValueError, OSError, MemoryError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        prof.save(args.out / "profile.json")
        print(f"{prof.device}: {len(prof.timings)} timings, {len(prof.interference)} "
              f"interference pairs in {prof.notes['seconds']} s; failures: "
              f"{prof.notes['failures']}", file=sys.stderr)  # fmt: skip
        print(args.out / "profile.json")
        return 0
    try:
        scfg = dataclasses.replace(
            QUICK_SEARCH if args.quick else SearchConfig(),
            max_nano_batches=2 if args.quick else args.max_nano_batches, granules=args.granules,
            margin=args.margin, explore=args.explore, solver=Solver(args.solver),
            time_limit_s=args.time_limit,
            jobs=args.jobs,
        )  # fmt: skip
        if args.max_tokens is not None:
            if args.max_tokens < 1:
                raise ValueError(f"--max-tokens must be >= 1, got {args.max_tokens}")
            scfg = dataclasses.replace(scfg, max_tokens=args.max_tokens)
        grid: dict[str, Any] = {
            f: _ints(getattr(args, f))
            for f in ("decode_points", "prefill_points", "context_points")
            if getattr(args, f) is not None
        }
        scfg = dataclasses.replace(scfg, **grid)
        prof, planset, results, path = tune(
            args.model, args.out, stored, pcfg, scfg, command,
            load_format=args.load_format, device=args.device, dtype=args.dtype,
            kv_cache_dtype=args.kv_cache_dtype,
        )  # fmt: skip
    except (ValueError, OSError, MemoryError, ProfileError, PlanError, MilpError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        choice = r.plan.name if r.plan is not None else "dense"
        print(f"d={r.shape.decodes:5d} p={r.shape.prefill_tokens:5d} c={r.shape.context:5d}  "
              f"dense {r.dense_us / 1e3:8.3f} ms  predicted {r.predicted_us / 1e3:8.3f} ms  "
              f"{choice}: {r.reason}", file=sys.stderr)  # fmt: skip
    failures = prof.notes.get("failures", [])
    plans = len(planset.plans)
    print(f"{prof.device}: {len(results)} buckets, {plans} plans, {len(failures)} failed "
          f"measurements, KV cache {planset.kv_cache_dtype}", file=sys.stderr)  # fmt: skip
    print(path)
    return 0


def _reprofiled(args: argparse.Namespace, pcfg: Any, command: str) -> Any:
    """The stored profile (``--profile``) with attention re-measured on this device, with this
    build's kernels and ``--kv-cache-dtype`` (``--reprofile``): the merged profile."""
    from runtime.tune.profiler import Only
    from runtime.tune.profiles import Profile, merge_profiles
    from runtime.tune.tuner import measure

    stored = Profile.load(args.profile)  # first: a bad stored profile costs no measurement
    fresh = measure(args.model, dataclasses.replace(pcfg, only=Only(args.reprofile)), command,
                    load_format=args.load_format, device=args.device, dtype=args.dtype,
                    kv_cache_dtype=args.kv_cache_dtype)  # fmt: skip
    merged = merge_profiles(stored, fresh)
    print(f"{fresh.device}: re-measured {len(fresh.timings)} {args.reprofile} timings and "
          f"{len(fresh.interference)} interference pairs in {fresh.notes['seconds']} s, kept "
          f"{merged.notes['merged']['stored']['timings_kept']} stored timings; failures: "
          f"{fresh.notes['failures']}", file=sys.stderr)  # fmt: skip
    return merged


def _profile_config(args: argparse.Namespace, base: Any) -> Any:
    """The profile grid: the base config with the options given on the command line."""
    grids = ("tokens", "attention_tokens", "contexts", "interference_tokens", "attention_sms",
             "carve_sms")  # fmt: skip
    changes: dict[str, Any] = {
        f: _ints(getattr(args, f)) for f in grids if getattr(args, f) is not None
    }
    if args.kv_gb is not None:
        changes["kv_gb"] = args.kv_gb
    if args.green:
        changes["green"] = True
    return dataclasses.replace(base, **changes) if changes else base


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"expected a comma list of integers, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
