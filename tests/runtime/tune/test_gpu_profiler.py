"""The profiler on a CUDA GPU (a tiny model, the quick grid with a coarse SM step): CUDA-event
timings on plain streams, green contexts and capped grids, interference pairs, and a search over
the result whose plans run and give the dense tokens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.tune.profiler import QUICK
from runtime.tune.search import QUICK_SEARCH
from runtime.tune.tuner import tune

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_gpu_profile_and_searched_plans(tiny_llama: str, tmp_path: Path) -> None:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    cfg = dataclasses.replace(QUICK, sm_step=max(8, sms // 4 // 8 * 8), green=True)
    prof, planset, results, path = tune(tiny_llama, tmp_path, None, cfg, QUICK_SEARCH,
                                        dtype="float32", device="cuda")  # fmt: skip
    assert prof.concurrent and prof.device_sms == sms
    assert prof.notes["failures"] == []
    placements = {t.placement for t in prof.timings}
    assert "whole" in placements
    assert any(p.startswith("green:") for p in placements)
    assert any(p.startswith("grid:") for p in placements)
    assert prof.interference and all(f.slowdown > 0 for f in prof.interference)
    assert len(results) == len(planset.buckets)
    prompts = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70))]
    greedy = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    dense = LLM(tiny_llama, dtype="float32", device="cuda").generate(prompts, greedy)
    piped = LLM(tiny_llama, dtype="float32", device="cuda", pipeline=str(path)).generate(
        prompts, greedy
    )
    assert [o.token_ids for o in piped] == [o.token_ids for o in dense]


def test_gpu_carve_profile(tiny_llama: str) -> None:
    """``carve_sms``: every other operation with its GEMMs aimed at the SMs attention leaves,
    paired with attention's grid sized to 16 SMs; a carve budget outside the grid caps (24)
    times attention's grid there only beside its carve; the search then has carve:16, carve:24
    and grid:16, but no grid:24 (never timed beside the whole device)."""
    from runtime.tune.costs import layouts
    from runtime.tune.tuner import measure

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    cfg = dataclasses.replace(QUICK, attention_sms=(16,), carve_sms=(16, 24, sms))
    prof = measure(tiny_llama, cfg, "test", dtype="float32", device="cuda")
    # a budget of every SM leaves none for the GEMMs: said, not silently dropped
    assert prof.notes["failures"] == [f"carve budget {sms}: the device has {sms} SMs"]
    others = [n for n, _ in prof.ops if n != prof.attention]
    pairs = {(f.op, f.placement, f.partner) for f in prof.interference}
    for n in (16, 24):
        rest = f"carve:{sms - n}"
        assert all(rest in prof.placements(op) for op in others)
        assert all((op, rest, f"grid:{n}") in pairs for op in others)
        assert (prof.attention, f"grid:{n}", rest) in pairs
    assert {"grid:16", "grid:24"} <= prof.placements(prof.attention)
    names = {lay.name for lay in layouts(prof)}
    assert {"carve:16", "carve:24", "grid:16"} <= names and "grid:24" not in names
