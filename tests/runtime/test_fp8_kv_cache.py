"""``kv_cache_dtype="fp8"``: float8 (e4m3) KV cache with per-layer scales, against the default
cache on the tiny random models and the trained demo model (CPU, float32 compute).

Bounds are measured values with margin (2026-11-29, this test's prompts): mean absolute error of
teacher-forced prompt log-probabilities 0.021-0.030 on the random tiny models and 0.12 on the
demo model (whose sharper distributions put more weight on the few large logits); the first
greedy token agreed on 31 of 32 prompts, and the demo model's free-running greedy outputs agreed
on 87.5% of tokens (random-weight models have near-uniform logits, so their free-running greedy
paths diverge on near-ties and are not a meaningful measure)."""

from __future__ import annotations

import random
import statistics

import pytest

from nanolang.demo import model_dir
from runtime import LLM, SamplingParams
from runtime.config import EngineConfig


def _runs(path: str) -> dict[str, list]:  # type: ignore[type-arg]
    outs = {}
    for kv in ("auto", "fp8"):
        llm = LLM(path, dtype="float32", device="cpu", kv_cache_dtype=kv)
        rng = random.Random(0)
        vocab = llm.engine.model_config.vocab_size
        prompts = [
            [rng.randrange(10, vocab) for _ in range(rng.randrange(20, 60))] for _ in range(8)
        ]
        params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True, prompt_logprobs=1)
        outs[kv] = llm.generate(prompts, params)
    return outs


def _errors(outs: dict[str, list]) -> tuple[float, int, float]:  # type: ignore[type-arg]
    """(mean |prompt logprob error|, first tokens equal, share of output tokens equal)."""
    pairs = list(zip(outs["auto"], outs["fp8"], strict=True))
    diffs = [
        abs(x - y)
        for a, b in pairs
        for x, y in zip(a.prompt_logprobs[1:], b.prompt_logprobs[1:], strict=True)
    ]
    first = sum(a.token_ids[0] == b.token_ids[0] for a, b in pairs)
    same = sum(x == y for a, b in pairs for x, y in zip(a.token_ids, b.token_ids, strict=True))
    return statistics.mean(diffs), first, same / sum(len(a.token_ids) for a, _ in pairs)


@pytest.mark.parametrize("name", ["llama", "mistral", "qwen2"])
def test_fp8_cache_is_close_on_tiny_models(tiny_models: dict[str, str], name: str) -> None:
    mean_err, first, _ = _errors(_runs(tiny_models[name]))
    assert 0 < mean_err < 0.06  # nonzero: the fp8 cache really was used
    assert first >= 7


def test_fp8_cache_keeps_the_demo_models_greedy_outputs() -> None:
    mean_err, first, share = _errors(_runs(str(model_dir())))
    assert 0 < mean_err < 0.25
    assert first >= 7 and share >= 0.75


def test_fp8_cache_holds_more_tokens_in_the_same_memory(tiny_llama: str) -> None:
    engines = {
        kv: LLM(tiny_llama, dtype="float32", device="cpu", kv_cache_dtype=kv,
                kv_cache_memory_bytes=4 << 20).engine
        for kv in ("auto", "fp8")
    }  # fmt: skip
    blocks = {kv: e.blocks.allocator.num_blocks for kv, e in engines.items()}
    assert blocks["fp8"] == 4 * blocks["auto"]  # 1 byte per element against float32's 4
    assert str(engines["fp8"].runner.kv_caches[0][0].dtype) == "torch.float8_e4m3fn"


def test_unknown_kv_cache_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="kv_cache_dtype must be one of auto, fp8"):
        EngineConfig(kv_cache_dtype="int4")


def test_decode_choices_are_validated_by_the_engine_config() -> None:
    # by-context at its measured ratio, float16 dots by default
    assert EngineConfig().decode_choice().spec() == "by-context@1.05:fp16"
    assert EngineConfig(decode_kernel="gather", fp8_decode_dot="q").decode_choice().spec() == (
        "gather:q"
    )
    with pytest.raises(ValueError, match="decode kernel must be one of"):
        EngineConfig(decode_kernel="flash")
    with pytest.raises(ValueError, match="fp8 decode dot must be one of"):
        EngineConfig(fp8_decode_dot="fp8")


def test_kv_scales_come_from_the_checkpoint(tmp_path, tiny_llama: str) -> None:  # type: ignore[no-untyped-def]
    import shutil

    import torch
    from safetensors.torch import save_file

    model = tmp_path / "m"
    shutil.copytree(tiny_llama, model)
    save_file({"model.layers.0.self_attn.k_scale": torch.tensor(0.5),
               "model.layers.1.self_attn.v_proj.v_scale": torch.tensor([2.0])},
              str(model / "scales.safetensors"))  # fmt: skip
    index = model / "model.safetensors.index.json"
    if index.exists():
        import json

        data = json.loads(index.read_text())
        data["weight_map"]["model.layers.0.self_attn.k_scale"] = "scales.safetensors"
        data["weight_map"]["model.layers.1.self_attn.v_proj.v_scale"] = "scales.safetensors"
        index.write_text(json.dumps(data))
    llm = LLM(str(model), dtype="float32", device="cpu", kv_cache_dtype="fp8")
    layers = llm.engine.model.layers
    assert (layers[0].k_scale, layers[0].v_scale) == (0.5, 1.0)
    assert (layers[1].k_scale, layers[1].v_scale) == (1.0, 2.0)
    out = llm.generate([[5, 6, 7, 8]], SamplingParams(max_tokens=3, temperature=0.0))
    assert len(out[0].token_ids) == 3
