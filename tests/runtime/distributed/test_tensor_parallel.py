"""Tensor parallelism on the CPU: two gloo processes give the tokens and logprobs of one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from runtime import LLM, SamplingParams
from runtime.config import ModelConfig, read_json
from runtime.distributed import TPLayout, shard_engine
from runtime.distributed.tensor_parallel import _vocab_rows, local_config

PROMPTS = ["The quick brown fox", "Programs ask questions, pick answers", "0 1 2 3"]
PARAMS = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True, prompt_logprobs=True)


def _generate(llm: LLM) -> list[dict[str, Any]]:
    return [
        {"tokens": o.token_ids, "prompt_logprobs": o.prompt_logprobs}
        for o in llm.generate(PROMPTS, PARAMS)
    ]


def _rank_main(rank: int, world: int, store: str, models: list[str], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        results = {}
        for path in models:
            llm = LLM(path, dtype="float32", device="cpu", max_num_batched_tokens=16)
            shard_engine(llm.engine, TPLayout.current())
            kv_heads = llm.engine.runner.kv_caches[0][0].shape[2]
            results[path] = {"kv_heads": kv_heads, "outputs": _generate(llm)}
        Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tiny_models: dict[str, str], tmp_path: Path) -> None:
    models = [tiny_models["llama"], tiny_models["llama_tied"]]
    mp.spawn(_rank_main, args=(2, str(tmp_path / "store"), models, str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for path in models:
        dense = _generate(LLM(path, dtype="float32", device="cpu", max_num_batched_tokens=16))
        full_kv = ModelConfig.from_hf(read_json(Path(path, "config.json"))).num_kv_heads
        for rank in ranks:
            assert rank[path]["kv_heads"] == full_kv // 2  # the cache holds local heads only
            for got, want in zip(rank[path]["outputs"], dense, strict=True):
                assert got["tokens"] == want["tokens"]
                assert got["prompt_logprobs"][1:] == pytest.approx(
                    want["prompt_logprobs"][1:], abs=1e-4
                )


def test_sizes_that_do_not_divide_are_refused(tiny_llama: str) -> None:
    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama, "config.json")))
    with pytest.raises(ValueError, match="num_key_value_heads"):
        local_config(cfg, 4)
    local = local_config(cfg, 2)
    assert (local.num_heads, local.num_kv_heads) == (cfg.num_heads // 2, cfg.num_kv_heads // 2)
    assert local.intermediate_size == cfg.intermediate_size // 2
    assert local.vocab_size == cfg.vocab_size  # the vocabulary is split by the embedding itself


def test_vocabulary_rows_are_padded_to_a_multiple_of_the_group() -> None:
    table = torch.randn(10, 3)
    shards = [_vocab_rows(table, TPLayout(rank, 4)) for rank in range(4)]
    assert all(s.shape == (3, 3) for s in shards)
    joined = torch.cat(shards)
    assert torch.equal(joined[:10], table) and not joined[10:].any()
