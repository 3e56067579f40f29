"""bench/serial_floor.py: the floor of a schedule without overlap across operations, rebuilt for
result records, on records made up for a workload whose floor is computed here by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench_scripts import load_bench

from runtime.bench.roofline import forward_flops, weight_bytes
from runtime.bench.workloads import WORKLOADS, make_requests, workload_seed
from runtime.model.loader import resolve_model


def _floor():  # type: ignore[no-untyped-def]
    return load_bench("serial_floor")


def _records(nanolang: float, peers: dict[str, float], n: int = 8) -> list[dict[str, Any]]:
    _, cfg = resolve_model("llama-3-8b")
    reqs = make_requests(WORKLOADS["512/512"], n, cfg.vocab_size, seed=workload_seed("512/512"))
    ours = {"engine": "nanolang", "mode": "sequential", "tensor_parallel_size": 1,
            "model": "llama-3-8b", "workload": "512/512", "num_requests": n,
            "total_tokens_per_s": nanolang, "gemm_peak_tflops": 800.0, "hbm_tb_per_s": 4.0,
            "kv_cache_tokens": 10**6, "kv_cache_dtype": "auto",
            "prompt_tokens": sum(len(r.prompt_token_ids) for r in reqs),
            "output_tokens": sum(r.output_len for r in reqs)}  # fmt: skip
    return [ours, *({"engine": e, "workload": "512/512", "num_requests": n,
                     "total_tokens_per_s": tps} for e, tps in peers.items())]  # fmt: skip


def _by_hand(n: int = 8, gemm_tflops: float = 800.0) -> float:
    """512/512 x n: every sequence 512 prompt and 512 output tokens; tokens/s at the floor. The
    cache holds all n at once, so 512 iterations each read the weights; the longer of that and
    the FLOPs at the GEMM rate, plus the KV bytes, all at 4 TB/s."""
    _, cfg = resolve_model("llama-3-8b")
    pairs = n * (512 * 513 // 2 + sum(range(513, 1024)))
    flops = forward_flops(cfg, n * 1024, n * 512, pairs)
    kv_token = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 2
    kv_bytes = kv_token * n * (sum(range(513, 1024)) + 2 * 1024)
    weights = 512 * weight_bytes(cfg, 2) / 4e12
    return n * 1024 / (max(flops / (gemm_tflops * 1e12), weights) + kv_bytes / 4e12)


def test_the_floor_and_the_percentages_match_a_hand_computation() -> None:
    """256 requests: the FLOPs bind (4.5 s at 800 TFLOP/s against 1.9 s of weight reads), so a
    slower GEMM rate lowers the floor; 8 requests: the weights' 512 reads bind, and it does not."""
    sf = _floor()
    floor = _by_hand(256)
    (row,) = sf.rows(_records(0.8 * floor, {"vllm 0.26.0": 0.7 * floor, "sglang": 0.75 * floor},
                              n=256))  # fmt: skip
    assert row["serial_floor_tokens_per_s"] == pytest.approx(floor, rel=1e-5)
    assert row["best_peer"] == "sglang"
    assert (row["pct_floor_nanolang"], row["pct_floor_peer"]) == (80.0, 75.0)
    assert row["pct_floor_target"] == pytest.approx(82.5)  # 1.1 x 75
    assert row["compute_s"] > row["weights_s"]
    (slow,) = sf.rows(_records(0.8 * floor, {"vllm": 0.7 * floor}, n=256), gemm_tflops=400.0)
    assert slow["serial_floor_tokens_per_s"] == pytest.approx(_by_hand(256, 400.0), 1e-5)
    assert slow["serial_floor_tokens_per_s"] < 0.8 * floor and slow["gemm_tflops"] == 400.0
    few = _by_hand(8)
    (tail,) = sf.rows(_records(0.5 * few, {"vllm": 0.4 * few}), gemm_tflops=400.0)
    assert tail["serial_floor_tokens_per_s"] == pytest.approx(few, rel=1e-5)
    assert tail["weights_s"] > tail["compute_s"]


def test_the_all_at_once_schedule_floor() -> None:
    """8 requests of 512/512: the first iteration's 4,096 prompt tokens are bound by their FLOPs
    (about 70 ms), each of the 511 decode steps over 8 sequences by one read of the weights
    (3.8 ms against 0.1 ms of FLOPs); plus the KV each iteration reads (the prompts' own, then
    each decode's context), as the records' serial roofline prices an engine's iterations. Not
    computed where the cache cannot hold every request at once."""
    sf = _floor()
    _, cfg = resolve_model("llama-3-8b")
    run = sf.run_of(_records(1000.0, {})[0])
    prompt_flops = forward_flops(cfg, 8 * 512, 8, 8 * 512 * 513 // 2)
    kv_token = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 2
    kv_bytes = kv_token * (8 * 512 + 8 * sum(512 + t for t in range(1, 512)))
    by_hand = prompt_flops / 800e12 + 511 * weight_bytes(cfg, 2) / 4e12 + kv_bytes / 4e12
    assert sf.all_at_once_seconds(run) == pytest.approx(by_hand, rel=1e-9)
    full = sf.run_of({**_records(1000.0, {})[0], "kv_cache_tokens": 8 * 1024 - 1})
    assert sf.all_at_once_seconds(full) is None
    (row,) = sf.rows(_records(1000.0, {"vllm": 900.0}))
    assert row["all_at_once_s"] >= row["serial_s"]  # one schedule, the floor of all of them
    assert row["pct_all_at_once_nanolang"] == pytest.approx(
        100 * row["all_at_once_s"] / (8 * 1024 / 1000.0), abs=0.1
    )


def test_decode_steps_by_batch_size_against_their_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """8 requests of 512/512: the all-at-once schedule has 511 decode steps over 8 sequences,
    each one read of the weights plus the contexts' KV at 4 TB/s (the FLOPs are far less); the
    record's 500 steps of 5 ms each lose 500 x (5 ms - that floor). A range the schedule never
    meets has no floor; ``--by-batch`` prints the rows without a peer in the file."""
    sf = _floor()
    _, cfg = resolve_model("llama-3-8b")
    kv_token = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 2
    per_step = [(weight_bytes(cfg, 2) + kv_token * 8 * (512 + t)) / 4e12 for t in range(1, 512)]
    floor_ms = 1e3 * sum(per_step) / len(per_step)
    record = {**_records(1000.0, {})[0], "decode_steps_by_batch": {
        "1-16": {"steps": 500, "mean_ms": 5.0, "seconds": 2.5},
        "17-32": {"steps": 2, "mean_ms": 6.0, "seconds": 0.012}}}  # fmt: skip
    small, other = sf.decode_floors_by_batch(record)
    assert (small["batch"], small["steps"], small["floor_steps"]) == ("1-16", 500, 511)
    assert small["floor_ms"] == pytest.approx(floor_ms, abs=1e-3)
    assert small["lost_s"] == pytest.approx(500 * (5.0 - small["floor_ms"]) / 1e3, abs=1e-3)
    assert other["floor_ms"] is None and other["lost_s"] is None
    assert sf.decode_floors_by_batch({**record, "decode_steps_by_batch": {}}) == []
    f = tmp_path / "run.json"
    f.write_text(json.dumps([record]))
    assert sf.main([str(f), "--by-batch"]) == 0
    assert f"| 512/512 (8) | 1-16 | 500 | 5.00 | {small['floor_ms']:.2f} (511) |" in (
        capsys.readouterr().out
    )


def test_rows_without_a_peer_are_left_out_and_other_runs_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sf = _floor()
    assert sf.rows(_records(1000.0, {})) == []
    shrunk = _records(1000.0, {"vllm": 900.0})
    shrunk[0]["prompt_tokens"] -= 1  # not the generator's requests: a shrunken run
    with pytest.raises(ValueError, match="prompt tokens"):
        sf.rows(shrunk)
    f = tmp_path / "run.json"
    f.write_text(json.dumps(_records(1000.0, {})))
    assert sf.main([str(f)]) == 1
    assert "no row" in capsys.readouterr().err
    f.write_text(json.dumps(_records(1000.0, {"vllm 0.26.0": 900.0})))
    out = tmp_path / "rows.json"
    assert sf.main([str(f), "--json", str(out)]) == 0
    assert "| 512/512 (8) | 1,000 | 900 (vllm 0.26.0) |" in capsys.readouterr().out
    assert json.loads(out.read_text())[0]["peer"] == 900.0


def test_bad_files_and_rates_get_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sf = _floor()
    missing = tmp_path / "missing.json"
    assert sf.main([str(missing)]) == 2
    assert f"error: {missing}:" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert sf.main([str(bad)]) == 2
    assert f"error: {bad}:" in capsys.readouterr().err
    bad.write_text(json.dumps({"engine": "nanolang"}))
    assert sf.main([str(bad)]) == 2
    assert "not a list of benchmark records" in capsys.readouterr().err
    records = _records(1000.0, {"vllm": 900.0})
    del records[0]["kv_cache_tokens"]
    bad.write_text(json.dumps(records))
    assert sf.main([str(bad)]) == 2
    assert "a record has no 'kv_cache_tokens'" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_records(1000.0, {"vllm": 900.0})))
    assert sf.main([str(good), "--gemm-tflops", "0"]) == 2
    assert "--gemm-tflops must be positive" in capsys.readouterr().err
