"""A launch queues its iteration without waiting for the device (GPU only).

A synchronizing call inside ``ModelRunner.launch`` (``torch.tensor(..., device="cuda")``, a
blocking copy, ``.item()``) makes the host wait for the forward it has just queued, so under
asynchronous scheduling the device idles while the host forms the next batch. torch's sync debug
mode turns every such call into an error; mixed prefill + decode iterations (eager) and
decode-only ones (CUDA graphs), greedy and sampled, run under it here.
"""

from __future__ import annotations

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.model_runner import Launched, ModelRunner
from runtime.scheduler import SchedulerOutput

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30]


@pytest.mark.parametrize("temperature", [0.0, 0.8], ids=["greedy", "sampled"])
def test_launches_never_wait_for_the_device(tiny_llama: str, temperature: float) -> None:
    llm = LLM(
        tiny_llama, dtype="bfloat16", device="cuda", max_num_seqs=8, max_num_batched_tokens=64,
        async_scheduling=True, enable_prefix_caching=False,  # the rerun must chunk its prefills
    )  # fmt: skip
    params = [
        SamplingParams(max_tokens=12, temperature=temperature, seed=i, ignore_eos=True)
        for i in range(len(PROMPTS))
    ]
    expected = [o.token_ids for o in llm.generate(PROMPTS, params)]  # warm-up: compiles kernels
    counts = {"mixed": 0, "decode": 0}
    original = ModelRunner.launch

    def launch(self: ModelRunner, batch: SchedulerOutput, prev: Launched | None) -> Launched:
        n = len(batch.scheduled)
        counts["decode" if batch.num_decode_seqs == n else "mixed"] += 1
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(self, batch, prev)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    llm.engine.runner.launch = launch.__get__(llm.engine.runner)  # type: ignore[method-assign]
    got = [o.token_ids for o in llm.generate(PROMPTS, params)]
    assert counts["mixed"] > 0 and counts["decode"] > 0, counts
    assert got == expected  # same batches, seeded draws: the same tokens as the unchecked run
