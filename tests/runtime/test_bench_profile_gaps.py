"""The profiled run's kernel-gap accounting (runtime.bench.profile_run.timeline_gaps)."""

import pytest
import torch

from runtime.bench.profile_run import kernel_spans, timeline_gaps


def test_gaps_between_back_to_back_kernels_are_summed_and_attributed():
    spans = [(0.0, 10.0, "gemm"), (12.0, 20.0, "norm"), (20.0, 30.0, "gemm"), (50.0, 51.0, "copy")]
    g = timeline_gaps(spans)
    assert g["kernels"] == 4
    assert g["gaps"] == 2  # 10 -> 12 and 30 -> 50; 20 -> 20 touches
    assert g["gap_us_total"] == 22.0
    assert g["gaps_under_5us"] == 1 and g["gap_us_under_5us"] == 2.0
    first = g["largest_by_pair"][0]
    assert (first["before"], first["after"], first["us_total"], first["count"]) == (
        "gemm", "copy", 20.0, 1)  # fmt: skip


def test_overlapping_kernels_leave_no_gap_and_the_latest_end_counts():
    # a long kernel with a short one inside it (another stream): the gap runs from the long end
    spans = [(0.0, 100.0, "attention"), (10.0, 20.0, "gemm"), (103.0, 110.0, "norm")]
    g = timeline_gaps(spans)
    assert g["gaps"] == 1 and g["gap_us_total"] == 3.0
    assert g["largest_by_pair"][0]["before"] == "attention"


def test_no_spans():
    assert timeline_gaps([])["gap_us_total"] == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernel_spans_come_from_the_device_timeline():
    from torch.profiler import ProfilerActivity, profile

    a = torch.randn(512, 512, device="cuda")
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(4):
            a = (a @ a).tanh()
        torch.cuda.synchronize()
    spans = kernel_spans(prof)
    assert len(spans) >= 8  # four GEMMs and four tanh kernels
    assert all(s <= e for s, e, _ in spans)
    assert [s for s, _, _ in spans] == sorted(s for s, _, _ in spans)
    g = timeline_gaps(spans)
    assert g["kernels"] == len(spans) and g["gap_us_total"] >= 0.0
