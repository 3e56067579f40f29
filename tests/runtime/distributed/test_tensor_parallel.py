"""Tensor parallelism on the CPU: the engine's own two gloo worker processes give the tokens and
prompt logprobs of one process, and a worker that dies or fails stops everything cleanly."""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.config import ModelConfig, read_json
from runtime.distributed import TPLayout
from runtime.distributed.executor import TensorParallelError, TensorParallelRunner, step_messages
from runtime.distributed.tensor_parallel import _vocab_rows, local_config
from runtime.sampler import SamplingSpec
from runtime.step_plan import StepPlan

PROMPTS = ["The quick brown fox", "Programs ask questions, pick answers", "0 1 2 3"]
PARAMS = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True, prompt_logprobs=True)
ENGINE = dict(dtype="float32", device="cpu", max_num_batched_tokens=16)


def _generate(llm: LLM, params: SamplingParams = PARAMS) -> list[dict[str, Any]]:
    return [
        {"tokens": o.token_ids, "prompt_logprobs": o.prompt_logprobs, "logprobs": o.logprobs}
        for o in llm.generate(PROMPTS, params)
    ]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone too (nothing runs), but our workers are reaped by join
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0


def _runner(llm: LLM) -> TensorParallelRunner:
    runner = llm.engine.runner
    assert isinstance(runner, TensorParallelRunner)
    return runner


@pytest.fixture(scope="module")
def tp_llm(tiny_models: dict[str, str]) -> Iterator[LLM]:
    with LLM(tiny_models["llama"], tensor_parallel_size=2, **ENGINE) as llm:  # type: ignore[arg-type]
        yield llm


@pytest.mark.slow
def test_two_ranks_match_one_process(tp_llm: LLM, tiny_models: dict[str, str]) -> None:
    dense = LLM(tiny_models["llama"], **ENGINE)  # type: ignore[arg-type]
    full_kv = ModelConfig.from_hf(read_json(Path(tiny_models["llama"], "config.json"))).num_kv_heads
    runner = _runner(tp_llm)
    assert len(runner.pids) == 2 and os.getpid() not in runner.pids
    assert [r.kv_heads for r in runner.ready] == [full_kv // 2] * 2  # each cache: its own heads
    want = _generate(dense)
    got = _generate(tp_llm)
    for g, w in zip(got, want, strict=True):
        assert g["tokens"] == w["tokens"]
        assert g["prompt_logprobs"][0] is None and w["prompt_logprobs"][0] is None
        assert g["prompt_logprobs"][1:] == pytest.approx(w["prompt_logprobs"][1:], abs=1e-4)
    # seeded sampling with logprobs: rank 0 samples, every rank continues from its tokens
    sampled = SamplingParams(max_tokens=6, temperature=0.8, top_p=0.9, seed=7, logprobs=1)
    for g, w in zip(_generate(tp_llm, sampled), _generate(dense, sampled), strict=True):
        assert g["tokens"] == w["tokens"]
        assert g["logprobs"] == pytest.approx(w["logprobs"], abs=1e-4)


@pytest.mark.slow
def test_async_scheduling_across_workers(tp_llm: LLM, tiny_models: dict[str, str]) -> None:
    """The driver launches iteration i + 1 before reading i back: pending input tokens come
    from the workers' own copy of rank 0's tokens."""
    dense = LLM(tiny_models["llama"], **ENGINE)  # type: ignore[arg-type]
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    want = [o.token_ids for o in dense.generate(PROMPTS, params)]
    long_prompt = list(range(3, 43))  # alone: its first iterations sample no row
    want.append(dense.generate(long_prompt, params)[0].token_ids)
    tp_llm.engine.async_scheduling = True
    try:
        assert [o.token_ids for o in tp_llm.generate(PROMPTS, params)] == want[:-1]
        assert tp_llm.generate(long_prompt, params)[0].token_ids == want[-1]
    finally:
        tp_llm.engine.async_scheduling = False


@pytest.mark.slow
def test_a_killed_worker_stops_everything_with_a_clear_error(tiny_models: dict[str, str]) -> None:
    llm = LLM(tiny_models["llama"], tensor_parallel_size=2, **ENGINE)  # type: ignore[arg-type]
    pids = _runner(llm).pids
    llm.add_request("The quick brown fox", SamplingParams(max_tokens=50, ignore_eos=True))
    llm.step()
    os.kill(pids[1], signal.SIGKILL)
    with pytest.raises(TensorParallelError, match=r"rank 1 \(pid \d+\) killed by SIGKILL"):
        while llm.has_unfinished_requests():
            llm.step()
    assert all(_gone(pid) for pid in pids)
    with pytest.raises(TensorParallelError, match="workers are stopped"):
        llm.step()


def test_a_worker_error_is_raised_even_when_found_by_a_send(tiny_models: dict[str, str]) -> None:
    """A rank that fails sends its traceback and exits; when the driver's next send finds the
    pipe closed (asynchronous scheduling sends before it reads), that traceback is what the
    caller sees, not only "stopped taking work"."""
    llm = LLM(tiny_models["llama"], tensor_parallel_size=2, **ENGINE)  # type: ignore[arg-type]
    runner = _runner(llm)
    llm.add_request("The quick brown fox", SamplingParams(max_tokens=50, ignore_eos=True))
    runner._control(0, ("profile_stop",))  # rank 0 raises: no profile was started
    runner._procs[0].join(timeout=60)
    assert runner._procs[0].exitcode == 1
    failure = r"(?s)rank 0 raised an error.*without profile_start"
    with pytest.raises(TensorParallelError, match=failure):
        llm.step()
    assert all(_gone(pid) for pid in runner.pids)


@pytest.mark.slow
def test_an_error_in_the_workers_reaches_the_caller(
    tiny_models: dict[str, str], tmp_path: Path
) -> None:
    """The caller reads config.json and the tokenizer; the workers read the weights, which are
    corrupt here: their error is raised in the caller and no process is left."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["llama"], broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    children_before = _children()
    failure = r"(?s)rank [01] raised an error.*SafetensorError"
    with pytest.raises(TensorParallelError, match=failure):
        LLM(str(broken), tensor_parallel_size=2, **ENGINE)  # type: ignore[arg-type]
    assert _children() <= children_before


@pytest.mark.slow
def test_keyboard_interrupt_stops_the_workers(tiny_models: dict[str, str]) -> None:
    llm = LLM(tiny_models["llama"], tensor_parallel_size=2, **ENGINE)  # type: ignore[arg-type]
    pids = _runner(llm).pids
    params = SamplingParams(max_tokens=10_000, ignore_eos=True)
    llm.add_request([1, 2, 3], params)
    # Earlier tests' garbage (their engines' process handles and queues) is collected first: a
    # SIGINT that lands inside a finalizer run by the collector is swallowed by Python ("Exception
    # ignored in ..."), which is not what this test is about. Ctrl-C gets Python's own handler.
    gc.collect()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.get_ident()
    timer = threading.Timer(1.0, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            while llm.has_unfinished_requests():
                llm.step()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert all(_gone(pid) for pid in pids)


@pytest.mark.slow
def test_random_weights_are_made_at_the_slice_size() -> None:
    """load_format='dummy' (how Llama-3-70B fits two GPUs): each rank makes only its slice; a
    vocabulary that does not divide by the group is padded and the padding is never sampled."""
    small = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1001}  # fmt: skip
    with LLM("llama-3-8b", load_format="dummy", hf_overrides=small, tensor_parallel_size=2,
             max_model_len=64, **ENGINE) as llm:  # type: ignore[arg-type]  # fmt: skip
        assert [r.kv_heads for r in _runner(llm).ready] == [1, 1]
        params = SamplingParams(max_tokens=8, temperature=1.0, seed=3, logprobs=2)
        outs = llm.generate([[1, 2, 3], [999, 1000, 5, 6]], params)
    for out in outs:
        assert len(out.token_ids) == 8 and all(0 <= t < 1001 for t in out.token_ids)
        assert out.logprobs is not None and all(lp <= 0 for lp in out.logprobs)


def _children(parent: int | None = None) -> set[int]:
    """Live child processes of ``parent`` (default: this one), without multiprocessing's
    resource tracker (started once with the first spawned process, it outlives them)."""
    want = str(parent or os.getpid())
    out = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        mine = f"\nPPid:\t{want}\n" in text and "State:\tZ" not in text
        if mine and b"resource_tracker" not in cmdline:
            out.add(int(status.parent.name))
    return out


def test_sizes_that_do_not_divide_are_refused(tiny_llama: str) -> None:
    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama, "config.json")))
    with pytest.raises(ValueError, match="num_key_value_heads"):
        local_config(cfg, 4)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        LLM(tiny_llama, tensor_parallel_size=4, **ENGINE)  # type: ignore[arg-type]
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


def test_tensor_parallel_size_is_validated() -> None:
    from runtime.config import EngineConfig

    with pytest.raises(ValueError, match="tensor_parallel_size"):
        EngineConfig(tensor_parallel_size=0)


@pytest.mark.slow
def test_penalties_and_logit_bias_match_one_process(
    tp_llm: LLM, tiny_models: dict[str, str]
) -> None:
    """Rows with [R, V] sampling tensors: rank 0 gets them, the other ranks a plan without."""
    dense = LLM(tiny_models["llama"], **ENGINE)  # type: ignore[arg-type]
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True, repetition_penalty=1.5,
                            frequency_penalty=0.5, logit_bias={5: 3.0})  # fmt: skip
    want = [o.token_ids for o in dense.generate(PROMPTS, params)]
    assert [o.token_ids for o in tp_llm.generate(PROMPTS, params)] == want
    assert want != [o.token_ids for o in dense.generate(PROMPTS, PARAMS)]  # they do change tokens


def test_only_the_sampling_rank_is_sent_the_dense_sampling_tensors() -> None:
    spec = SamplingSpec([1.0], [1.0], [0], [0.0], None, None)
    plan = StepPlan(
        graph=False, input_ids=np.zeros(1, np.int64), positions=np.zeros(1, np.int64),
        slots=np.zeros(1, np.int64), block_tables=np.zeros((1, 1), np.int32), cu_seqlens=(0, 1),
        context_lens=(1,), num_decode_seqs=0, patch_rows=[], patch_src=[], sample_rows=[0],
        sample_index=[0],
        prompt_rows={}, prompt_top_k={}, sampling=spec, want_logprobs=False, top_k=[0],
    )  # fmt: skip
    first, other = step_messages(plan)
    assert first is other  # nothing dense: pickled once
    dense = dataclasses.replace(
        spec, mask=torch.ones(1, 4096, dtype=torch.bool), bias=torch.randn(1, 4096),
        repetition=torch.rand(1, 4096),
    )  # fmt: skip
    first, other = step_messages(dataclasses.replace(plan, sampling=dense))
    got = pickle.loads(first)[1].sampling
    assert torch.equal(got.mask, dense.mask) and torch.equal(got.bias, dense.bias)
    assert torch.equal(got.repetition, dense.repetition)
    light = pickle.loads(other)[1]
    assert light.sampling.mask is None and light.sampling.bias is None
    assert light.sampling.repetition is None and light.sampling.temperature == [1.0]
    assert np.array_equal(light.input_ids, plan.input_ids) and len(other) < len(first) // 10


def test_more_ranks_than_gpus_is_refused_before_any_worker_starts(tiny_llama: str) -> None:
    want = max(2, torch.cuda.device_count() + 1)  # more than this machine has
    with pytest.raises(ValueError, match=rf"tensor_parallel_size={want} needs {want} GPUs"):
        LLM(tiny_llama, device="cuda", dtype="float32", tensor_parallel_size=want)
    with pytest.raises(ValueError, match="tensor_parallel_size must be >= 1"):
        LLM(tiny_llama, dtype="float32", tensor_parallel_size=-1)
