"""Programs with the prefix cache on vs off: less prefill work, the same results."""

from __future__ import annotations

from nanolang.demo import model_dir
from nanolang.demo.suite import SUITE
from nanolang.jobs.cache_compare import compare, markdown


def test_shared_prefixes_are_computed_once_and_results_do_not_change() -> None:
    by_name = {e.name: e for e in SUITE}
    records = [compare(by_name[n], 4, str(model_dir())) for n in ("mmlu", "tree_of_thought")]
    for r in records:
        assert r["identical_values"] == r["rows"]
        assert r["prefill_tokens_on"] < 0.5 * r["prefill_tokens_off"], r
        assert r["hit_rate"] > 0.5
    assert "| mmlu | 4 |" in markdown(records)
