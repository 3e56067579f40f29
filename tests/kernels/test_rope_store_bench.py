"""bench/rope_store.py runs end to end (on Triton's CPU interpreter without a GPU, at a few
rows): every case finds the fused kernel's output equal to rotary then store_kv's and writes its
record, so the GPU command the lead runs does not fail on the script itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_bench

pytest.importorskip("triton")
from triton_env import needs_triton_device


def _bench():  # type: ignore[no-untyped-def]
    return load_bench("rope_store")


@pytest.mark.gpu
@needs_triton_device
def test_every_case_checks_and_records(tmp_path: Path) -> None:
    bench = _bench()
    out = tmp_path / "rope_store.json"
    bench.main(["--batches", "decode:3,mixed:9", "--cache-dtypes", "bf16", "--cache-slots",
                "512", "--reps", "1", "--out", str(out)])  # fmt: skip
    records = json.loads(out.read_text())["records"]
    assert [(r["shape"], r["batch"], r["tokens"], r["decode_rows"]) for r in records] == [
        ("llama-3-8b", "decode", 3, 3), ("llama-3-8b", "mixed", 9, 4),
        ("llama-3-70b-tp2", "decode", 3, 3), ("llama-3-70b-tp2", "mixed", 9, 4),
    ]  # fmt: skip
    assert all(r["same_output"] and r["fused"]["device_us"] > 0 for r in records)


def test_bad_batches_are_refused() -> None:
    with pytest.raises(SystemExit, match="decode:N or mixed:N"):
        _bench().parse_batches("decode:256,prefill:10")
