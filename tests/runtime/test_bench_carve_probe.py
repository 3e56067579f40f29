"""bench/carve_probe.py's CPU parts: every attention configuration it measures is confined (one
program per SM), the best one is the fastest correct one, and its tables render a report."""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_bench


def test_every_configuration_holds_one_program_per_sm() -> None:
    probe = load_bench("carve_probe")
    labels = [label for label, _ in probe.CONFIGS]
    assert len(set(labels)) == len(labels)
    assert all(cfg.ctas_per_sm == 1 and not cfg.tma for _, cfg in probe.CONFIGS)
    assert probe.CONFIGS[0][1] == probe.CONFINED_DECODE  # the engine's default is measured
    assert any(cfg.evict_kv for _, cfg in probe.CONFIGS)


def test_the_best_configuration_is_the_fastest_correct_one() -> None:
    probe = load_bench("carve_probe")
    (a, _), (b, cfg_b) = probe.CONFIGS[0], probe.CONFIGS[1]
    rows = [{"label": a, "gbps": 700.0}, {"label": b, "gbps": 900.0},
            {"label": probe.CONFIGS[2][0], "error": "relative error 0.5"}]  # fmt: skip
    assert probe.best_config(rows) == (b, cfg_b)
    assert probe.best_config([{"label": a, "error": "out of shared memory"}]) is None


def test_the_tables_render_a_report() -> None:
    probe = load_bench("carve_probe")
    report = {
        "attention": [
            {"label": "default 64x8w4s", "sms": 16, "time_ms": 5.1, "gbps": 842.0,
             "gbps_per_sm": 52.6},
            {"label": "128x8w3s", "sms": 16, "error": "OutOfResources: shared memory"},
        ],
        "gemms": [{"rows": 1024, "attention_sms": 16, "whole_ms": 0.6, "aimed_ms": 0.7,
                   "aimed_vs_share": 1.03}],
        "overlap": [{"layout": "1024 rows: attention confined to 16 SMs, default | GEMMs aimed",
                     "attention_slowdown": 1.05, "gemm_slowdown": 1.1,
                     "speedup_vs_whole_gpu_serial": 1.2}],
    }  # fmt: skip
    text = probe.table(report)
    assert "| default 64x8w4s | 16 | 5.1 | 842.0 | 52.6 |" in text
    assert "| 128x8w3s | 16 | OutOfResources: shared memory | - | - |" in text
    assert "| 1024 | 16 | 0.6 | 0.7 | 1.03 |" in text
    assert "| 1.05x | 1.1x | 1.2x |" in text


def test_the_evict_first_twin_differs_only_in_its_loads() -> None:
    from dataclasses import replace

    probe = load_bench("carve_probe")
    assert probe.EVICT_FIRST.evict_kv
    assert replace(probe.EVICT_FIRST, evict_kv=False) == probe.CONFINED_DECODE


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    """Before any GPU work: a non-integer or non-positive list, or a batch too small to check."""
    probe = load_bench("carve_probe")
    out = ["--out", str(tmp_path / "p.json")]
    for argv, said in ((["--rows", "1024,x"], "--rows: expected a comma list of integers"),
                       (["--sms", "0,16"], "--sms: expected integers >= 1"),
                       (["--batch", "64"], "--batch must exceed 511")):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            probe.main(argv + out)
        assert exc.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
