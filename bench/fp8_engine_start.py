"""Start an engine with the shipped fp8 plan set (what ``--mode nanoflow --kv-cache-dtype fp8``
runs on the H200) and report its decode CUDA graphs and the GPU memory left after start-up:
``PYTHONPATH=. python bench/fp8_engine_start.py`` (the run of 2026-11-30 is in
bench/results/2026-11-30-h200-llama-3-8b-nanoflow-fp8-engine-start.txt)."""

from __future__ import annotations

import logging
import sys
import time

import torch

from runtime.llm import LLM


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    t = time.time()
    llm = LLM("llama-3-8b", load_format="dummy", kv_cache_dtype="fp8", pipeline="default",
              max_num_seqs=1024)  # fmt: skip
    free, total = torch.cuda.mem_get_info()
    print(f"STARTED in {time.time() - t:.1f} s; free {free / 2**30:.1f} GiB of "
          f"{total / 2**30:.1f}; max allocated {torch.cuda.max_memory_allocated() / 2**30:.1f} "
          f"GiB; {llm.engine.pipeline_summary}")  # fmt: skip


if __name__ == "__main__":
    main()
