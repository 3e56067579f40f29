"""``nanolang bench --programs``: multi-call programs in three modes (naive, independent, graph),
with and without KV memory pressure; ``run_programs(BenchConfig(...))`` is the Python entry point
and ``python -m nanolang.bench`` the command line."""

from nanolang.bench.runner import BenchConfig, run_programs

__all__ = ["BenchConfig", "run_programs"]
