"""bench/admission_sim.py drives the real scheduler: with the default reserve a batch sized to
memory finishes every request without a preemption; without a reserve the same cache preempts,
and still every request gets all its tokens."""

from __future__ import annotations

from bench_scripts import load_bench


def _sim():  # type: ignore[no-untyped-def]
    return load_bench("admission_sim")


def test_the_reserve_keeps_a_full_cache_from_preempting() -> None:
    sim = _sim()
    # 12 requests of 512 + 1024 tokens need 96 blocks of 16 each; 400 blocks hold 4 at a time
    safe = sim.simulate("512/1024", 12, 400, sim.Model(), reserve=2048)
    assert safe["preemptions"] == 0
    assert safe["largest_batch"] == 4
    assert safe["output_tokens"] == 12 * 1024
    greedy = sim.simulate("512/1024", 12, 400, sim.Model(), reserve=0)
    assert greedy["preemptions"] > 0
    assert greedy["largest_batch"] > 4
    # a preempted sequence's tokens are recomputed, not resampled: the count is exact
    assert greedy["output_tokens"] == 12 * 1024
    assert greedy["modelled_seconds"] > 0 and safe["modelled_seconds"] > 0
