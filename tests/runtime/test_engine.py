"""Engine behaviour on a real (tiny) checkpoint: sampling, stops, constraints, step API, errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from runtime import LLM, ConstraintError, ModelLoadError, SamplingParams
from runtime.config import ModelConfig, presets, read_json

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def llm(tiny_llama: str) -> LLM:
    return LLM(tiny_llama, dtype="float32", device="cpu")


def no_blocks_leaked(llm: LLM) -> bool:
    return llm.engine.blocks.allocator.num_used == 0 and not llm.has_unfinished_requests()


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(llm: LLM) -> None:
    p = SamplingParams(max_tokens=12, temperature=1.0, seed=123, ignore_eos=True)
    alone = llm.generate([PROMPT], p)[0]
    batched = llm.generate(["other prompt", PROMPT, "a third one"], p)[1]
    assert alone.token_ids == batched.token_ids
    other_seed = llm.generate([PROMPT], SamplingParams(max_tokens=12, seed=7, ignore_eos=True))
    assert other_seed[0].token_ids != alone.token_ids


def test_top_k_one_and_tiny_top_p_equal_greedy(llm: LLM) -> None:
    greedy = llm.generate([PROMPT], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
    top_k = llm.generate([PROMPT], SamplingParams(max_tokens=8, top_k=1, seed=1, ignore_eos=True))
    top_p = llm.generate(
        [PROMPT], SamplingParams(max_tokens=8, top_p=1e-6, seed=2, ignore_eos=True)
    )
    min_p = llm.generate([PROMPT], SamplingParams(max_tokens=8, min_p=1.0, seed=3, ignore_eos=True))
    assert greedy[0].token_ids == top_k[0].token_ids == top_p[0].token_ids == min_p[0].token_ids


def test_logprobs_of_sampled_tokens(llm: LLM) -> None:
    p = SamplingParams(max_tokens=6, temperature=0, logprobs=True, ignore_eos=True)
    out = llm.generate([PROMPT], p)[0]
    assert out.logprobs is not None and len(out.logprobs) == len(out.token_ids)
    # the same tokens scored as a prompt give the same log-probabilities
    ids = out.prompt_token_ids + out.token_ids
    scored = llm.generate([ids], SamplingParams(max_tokens=1, prompt_logprobs=True))[0]
    tail = scored.prompt_logprobs[len(out.prompt_token_ids) :]
    assert tail == pytest.approx(out.logprobs, abs=1e-4)


def test_stop_string_is_cut_from_the_text(llm: LLM) -> None:
    free = llm.generate([PROMPT], SamplingParams(max_tokens=20, temperature=0, ignore_eos=True))
    text = free[0].text
    assert len(text) > 4
    stop = text[2:4]
    out = llm.generate([PROMPT], SamplingParams(max_tokens=20, temperature=0, stop=[stop]))[0]
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert out.text == text[: text.find(stop)]
    assert stop not in out.text


def test_stop_token_ids_and_max_tokens(llm: LLM) -> None:
    free = llm.generate([PROMPT], SamplingParams(max_tokens=10, temperature=0, ignore_eos=True))[0]
    target = free.token_ids[3]
    out = llm.generate(
        [PROMPT], SamplingParams(max_tokens=10, temperature=0, stop_token_ids=[target])
    )[0]
    assert out.finish_reason == "stop" and out.stop_reason == target
    assert out.token_ids == free.token_ids[: free.token_ids.index(target) + 1]
    assert free.finish_reason == "length" and len(free.token_ids) == 10


def test_eos_finishes_unless_ignored(llm: LLM) -> None:
    eos = llm.tokenizer.eos_token_id
    outs = llm.generate([PROMPT] * 8, [SamplingParams(max_tokens=40, seed=s) for s in range(8)])
    for out in outs:
        if out.finish_reason == "stop":
            assert out.token_ids[-1] == eos
        else:
            assert len(out.token_ids) == 40 and eos not in out.token_ids


def test_regex_constraint(llm: LLM) -> None:
    p = SamplingParams(max_tokens=8, temperature=1.0, seed=5, regex=r"[0-9]{2,4}")
    for out in llm.generate([PROMPT, "x"], p):
        assert re.fullmatch(r"[0-9]{2,4}", out.text), out.text


def test_json_schema_constraint(llm: LLM) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
    }
    out = llm.generate([PROMPT], SamplingParams(max_tokens=40, json_schema=schema, seed=1))[0]
    assert out.finish_reason == "stop", out
    assert isinstance(json.loads(out.text)["ok"], bool)


def test_step_api_streams_and_aborts(llm: LLM) -> None:
    rid = llm.add_request(PROMPT, SamplingParams(max_tokens=50, ignore_eos=True))
    other = llm.add_request("hi", SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))
    seen: dict[str, int] = {}
    for _ in range(4):
        for out in llm.step():
            seen[out.request_id] = len(out.token_ids)
    assert seen[rid] == 4 and seen[other] == 3
    assert llm.engine.blocks.allocator.num_used > 0
    aborted = llm.abort_request(rid)
    assert aborted is not None and aborted.finish_reason == "abort" and aborted.finished
    assert no_blocks_leaked(llm)
    assert llm.abort_request("no-such-request") is None


def test_iteration_metrics_show_batching(llm: LLM) -> None:
    outs = llm.generate(["a", "bb", "ccc"], SamplingParams(max_tokens=4, ignore_eos=True))
    first = {o.metrics.first_scheduled_iteration for o in outs}
    assert len(first) == 1  # all three admitted in one iteration
    assert all(len(o.metrics.iterations) == 4 for o in outs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=-1.0), "temperature must be >= 0"),
        (dict(top_p=0.0), "top_p must be in"),
        (dict(top_p=1.5), "top_p must be in"),
        (dict(max_tokens=0), "max_tokens must be"),
        (dict(min_p=2.0), "min_p must be"),
        (dict(stop=[""]), "stop strings"),
    ],
)
def test_invalid_sampling_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_bad_requests_are_rejected_without_leaks(llm: LLM) -> None:
    with pytest.raises(ValueError, match="this engine's context is"):
        llm.generate([[5] * 600])
    with pytest.raises(ValueError, match="out of range"):
        llm.generate([[10**9]])
    with pytest.raises(ValueError, match="empty"):
        llm.generate([[]])
    with pytest.raises(ValueError, match="out of range"):
        llm.generate([[1, -1]])
    with pytest.raises(ValueError, match="out of range"):
        llm.generate([[1, 10**30]])  # past 64 bits
    for bad in ([1, 2.0], [1, "2"], [None]):
        with pytest.raises(TypeError, match="a list of token ids"):
            llm.engine.add_request(bad)  # type: ignore[arg-type]
    with pytest.raises(ConstraintError, match="regex"):
        llm.generate(["x", PROMPT], [SamplingParams(), SamplingParams(regex="([a")])
    assert no_blocks_leaked(llm)


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        LLM(str(tmp_path), device="cpu")
    with pytest.raises(ModelLoadError, match="neither a directory nor a preset"):
        LLM(str(tmp_path / "missing"), device="cpu")


def test_unsupported_architecture_and_missing_weights(tiny_llama: str, tmp_path: Path) -> None:
    bad = tmp_path / "gpt2"
    shutil.copytree(tiny_llama, bad)
    cfg = read_json(bad / "config.json")
    (bad / "config.json").write_text(json.dumps({**cfg, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ModelLoadError, match=r"unsupported architecture 'GPT2LMHeadModel'"):
        LLM(str(bad), device="cpu")
    empty = tmp_path / "noweights"
    shutil.copytree(tiny_llama, empty)
    (empty / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors"):
        LLM(str(empty), device="cpu")


def test_presets_describe_the_real_architectures() -> None:
    assert {"llama-3-8b", "llama-2-7b", "qwen2-7b", "mistral-7b", "llama-3-70b"} <= set(presets())
    from runtime.config import PRESET_DIR

    params = {
        name: ModelConfig.from_hf(read_json(PRESET_DIR / f"{name}.json")).num_parameters
        for name in presets()
    }
    assert params["llama-3-8b"] == pytest.approx(8.03e9, rel=0.01)
    assert params["llama-2-7b"] == pytest.approx(6.74e9, rel=0.01)
    assert params["llama-3-70b"] == pytest.approx(70.6e9, rel=0.01)
    assert params["qwen2-7b"] == pytest.approx(7.62e9, rel=0.01)
    assert params["mistral-7b"] == pytest.approx(7.25e9, rel=0.01)


def test_dummy_weights_for_a_preset_run_on_token_ids() -> None:
    # a real preset's shape, shrunk to a few layers so it fits a CPU test
    shrink = {"num_hidden_layers": 1, "vocab_size": 1024, "intermediate_size": 512}
    llm = LLM(
        "llama-2-7b",
        load_format="dummy",
        device="cpu",
        dtype="float32",
        hf_overrides=shrink,
        kv_cache_memory_bytes=64 << 20,
        max_model_len=256,
    )
    assert llm.engine.model_config.hidden_size == 4096
    assert llm.tokenizer is None
    out = llm.generate([[1, 2, 3]], SamplingParams(max_tokens=2, temperature=0, ignore_eos=True))
    assert len(out[0].token_ids) == 2 and out[0].text == ""


def test_reset_kv_resizes_the_cache_and_toggles_prefix_caching(tiny_llama: str) -> None:
    llm = LLM(tiny_llama, dtype="float32", device="cpu", enable_prefix_caching=True)
    engine = llm.engine
    p = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    before = llm.generate([PROMPT], p)[0].token_ids
    engine.reset_kv(4, enable_prefix_caching=False)
    assert engine.blocks.allocator.num_blocks == 4 and engine.blocks.cache is None
    assert engine.max_model_len == 4 * engine.config.block_size
    assert llm.generate([PROMPT], p)[0].token_ids == before  # same model, smaller cache
    engine.reset_kv(enable_prefix_caching=True)
    assert engine.blocks.allocator.num_blocks == engine.kv_capacity_blocks
    assert engine.blocks.cache is not None and engine.config.enable_prefix_caching
    with pytest.raises(ValueError, match="num_blocks"):
        engine.reset_kv(engine.kv_capacity_blocks + 1)
    engine.add_request(PROMPT, p)
    with pytest.raises(RuntimeError, match="idle"):
        engine.reset_kv(4)
