"""bench/split_target_probe.py's pieces that run without a GPU: the ragged contexts it times and
the torch attention every launch is checked against (here against the project's reference)."""

from __future__ import annotations

import pytest
import torch
from bench_scripts import load_bench
from kernel_batches import make_paged_batch

from kernels import reference


def _probe():  # type: ignore[no-untyped-def]
    pytest.importorskip("triton")
    return load_bench("split_target_probe")


def test_ragged_contexts_spread_to_twice_the_mean() -> None:
    probe = _probe()
    assert probe.context_lens(4, 384, False) == [384] * 4
    lens = probe.context_lens(16, 768, True)
    assert sorted(lens)[0] == 1 and max(lens) == 2 * 768 - 1
    assert sum(lens) / len(lens) == pytest.approx(768, abs=1)
    assert lens != sorted(lens) and lens == probe.context_lens(16, 768, True)  # fixed shuffle
    assert probe.context_lens(1, 768, True) == [768]


def test_the_check_agrees_with_the_reference() -> None:
    probe = _probe()
    ctx = [37, 100, 5]
    batch = make_paged_batch([1] * 3, ctx, 3, 8, 2, 16, 16, torch.float32, "cpu", 3)
    meta = batch.meta
    layer = {"q": batch.q, "k_cache": batch.k_cache, "v_cache": batch.v_cache,
             "block_tables": meta.block_tables, "context_lens": meta.context_lens}  # fmt: skip
    expected = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, batch.meta, 0.25)
    torch.testing.assert_close(probe.dense_reference(layer, 16), expected, rtol=1e-4, atol=1e-5)


def test_the_plan_must_cover_the_longest_context(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _probe()
    for argv in (["--plan-len", "1000", "--contexts", "1024"],
                 ["--plan-len", "1500", "--contexts", "1024", "--ragged"],
                 ["--reps", "0"], ["--batches", "0"], ["--cuts", "evenly"],
                 ["--cuts", ","]):  # fmt: skip
        monkeypatch.setattr("sys.argv", ["split_target_probe.py", "--out", "x.json", *argv])
        with pytest.raises(SystemExit) as info:
            probe.main()
        assert info.value.code == 2


def test_the_table_gives_each_cut_its_row() -> None:
    probe = _probe()
    key = {"kernel": "gather", "context": 384, "batch": 16}
    rows = [
        {**key, "cut": cut, "target": t, "us_per_layer": us}
        for cut, t, us in (("context", 1, 9.0), ("context", 2, 8.0), ("length", 1, 6.5),
                           ("length", 2, 7.0))
    ]  # fmt: skip
    lines = probe.table(rows, [1, 2]).splitlines()
    assert lines[2] == "| gather | context | 384 | 16 | 9.0 | 8.0 | 2 |"
    assert lines[3] == "| gather | length | 384 | 16 | 6.5 | 7.0 | 1 |"
