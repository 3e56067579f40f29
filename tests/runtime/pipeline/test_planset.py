"""Plan sets at run time: the bucket of a batch shape, the dense answer, the plan set found for
'default', and the engine's tokens with a plan set (the same as dense)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from runtime import LLM, SamplingParams
from runtime.pipeline import PlanError, Unit, two_partition_plan
from runtime.pipeline.plans import load_pipeline, searched_plan_set, two_stream_plan
from runtime.pipeline.planset import Bucket, PlanSet, signature_of

PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30, [11, 12]]


def make_set(
    signature: dict[str, int] | None = None, device: str = "cpu", kv: str = "float32"
) -> PlanSet:
    """Prefill-heavy shapes: a partitioned plan; 4 decodes: two streams, attention's grid
    capped; 1 decode: dense. ``kv``: the KV cache dtype it was 'searched' over (the tests'
    float32 engines)."""
    prefill = two_partition_plan("prefill-plan", [48, 80], attention_sms=8, device_sms=16)
    base = two_stream_plan("decode-plan", [2, 2], device_sms=16)
    ops = tuple(replace(o, unit=Unit(0, 1, max_sms=8)) if o.op == "attention" else o
                for o in base.ops)  # fmt: skip
    decode = replace(base, ops=ops)  # attention's grid capped at 8 SMs
    plans = {"prefill-plan.json": prefill, "decode-plan.json": decode}
    buckets = []
    for d in (0, 1, 4):
        for p in (0, 128):
            if d + p == 0:
                continue
            for c in (16, 64):
                name = "prefill-plan.json" if p else ("decode-plan.json" if d == 4 else None)
                buckets.append(Bucket(d, p, c, name, 1.0, 1.1 if name else 1.0))
    return PlanSet("tiny", device, 16, (0, 1, 4), (0, 128), (16, 64), tuple(buckets), 64,
                   signature or {}, kv_cache_dtype=kv, plans=plans)  # fmt: skip


def test_lookup_by_nearest_representative() -> None:
    ps = make_set()
    assert ps.lookup(0, 100, 20).plan == "prefill-plan.json"
    assert ps.lookup(3, 0, 20).plan == "decode-plan.json"  # 3 decodes: nearest is 4
    assert ps.lookup(2, 0, 20).plan is None  # 2 is between 1 and 4: nearer 1 -> dense
    assert ps.lookup(1, 0, None).context == 64  # no host lengths: the graph context
    assert ps.lookup(4, 50, 20).prefill_tokens == 128  # any prefill rows: not the 0 bucket
    assert ps.plan_for(1, 0, 16) is None


def test_plan_set_round_trip_and_errors(tmp_path: Path) -> None:
    ps = make_set()
    path = ps.save(tmp_path)
    again = PlanSet.load(path)
    assert again.buckets == ps.buckets and again.plans == ps.plans
    d = json.loads(path.read_text())
    d["version"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(PlanError, match="version 99"):
        PlanSet.load(path)
    d["version"] = 1
    d["buckets"] = d["buckets"][1:]
    path.write_text(json.dumps(d))
    with pytest.raises(PlanError, match="must cover its grid once each; missing"):
        PlanSet.load(path)
    with pytest.raises(PlanError, match="no bucket for 0 decodes"):
        ps.lookup(0, 0, 16)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PlanError, match="cannot read"):
        PlanSet.load(tmp_path / "bad.json")


def test_default_finds_the_searched_set_for_this_model_and_device(tmp_path: Path) -> None:
    sig = {"hidden_size": 64, "num_layers": 2}
    make_set(sig, "NVIDIA H200").save(tmp_path / "a")
    make_set({"hidden_size": 32}, "NVIDIA H200").save(tmp_path / "b")
    found = searched_plan_set(sig, "NVIDIA H200", tmp_path, "float32")
    assert found is not None and found.signature == sig
    assert searched_plan_set(sig, "cpu", tmp_path) is None
    # nothing shipped for this model: 'default' stays the hand-picked plans by class
    assert set(load_pipeline("default", {"hidden_size": 1}, "cpu")) == {"decode", "prefill"}


@pytest.fixture(scope="module")
def dense(tiny_llama: str) -> list:
    greedy = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    return LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64).generate(
        PROMPTS, greedy
    )


def test_engine_with_a_plan_set_gives_the_dense_tokens(
    tiny_llama: str, dense: list, tmp_path: Path
) -> None:
    from runtime.config import ModelConfig, read_json

    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama) / "config.json"))
    path = make_set(signature_of(cfg, 4)).save(tmp_path)
    for spec in (str(path), f"{path}:sequential"):
        llm = LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64,
                  pipeline=spec)  # fmt: skip
        fwd = llm.engine.runner.forward
        assert fwd.planset is not None  # type: ignore[attr-defined]
        assert fwd.executor_for(1, 1, 20.0) is None  # type: ignore[attr-defined]
        assert fwd.executor_for(4, 4, 20.0).plan.name.startswith("decode-plan")  # type: ignore[attr-defined]
        assert fwd.executor_for(60, 0, 30.0).plan.name.startswith("prefill-plan")  # type: ignore[attr-defined]
        outs = llm.generate(PROMPTS, SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
        assert [o.token_ids for o in outs] == [o.token_ids for o in dense]


def test_plan_set_for_another_model_is_refused(tiny_llama: str, tmp_path: Path) -> None:
    path = make_set({"hidden_size": 4096}).save(tmp_path)
    with pytest.raises(PlanError, match="searched for layers"):
        LLM(tiny_llama, dtype="float32", device="cpu", pipeline=str(path))


def test_shipped_h200_plan_set_is_found_and_checked() -> None:
    """The plan set searched from the H200 profile is what --mode nanoflow picks for
    Llama-3-8B on that device: every bucket valid, each dense bucket with its reason, every plan
    (if any) loadable; on other devices the hand-picked plans stay."""
    from runtime.model.loader import resolve_model
    from runtime.pipeline.plans import SEARCHED_DIR, load_pipeline
    from runtime.pipeline.planset import signature_of

    _, cfg = resolve_model("llama-3-8b", None)
    found = load_pipeline("default", signature_of(cfg, 2), "NVIDIA H200")
    assert isinstance(found, PlanSet)
    assert found == PlanSet.load(SEARCHED_DIR / "llama-3-8b-h200" / "planset.json")
    assert len(found.buckets) == 92
    assert found.kv_cache_dtype == "bfloat16"  # searched over the bf16 cache
    # an engine with an fp8 KV cache finds the fp8 set (tests/runtime/tune/test_promote.py)
    fp8 = load_pipeline("default", signature_of(cfg, 2), "NVIDIA H200", "float8_e4m3fn")
    assert isinstance(fp8, PlanSet) and fp8.kv_cache_dtype == "float8_e4m3fn"
    assert not isinstance(load_pipeline("default", signature_of(cfg, 2), "NVIDIA H200",
                                        "float16"), PlanSet)  # fmt: skip
    assert all(b.reason for b in found.buckets if b.plan is None)
    assert all(b.predicted_ms <= b.dense_ms for b in found.buckets)
    assert not isinstance(load_pipeline("default", signature_of(cfg, 2), "NVIDIA H100"), PlanSet)


def test_dense_buckets_run_the_model_itself(tiny_llama: str, tmp_path: Path) -> None:
    """A batch whose bucket says dense goes to the model's own forward (no executor)."""
    from runtime.pipeline.runner import PipelineForward

    llm = LLM(tiny_llama, device="cpu", dtype="float32")
    buckets = tuple(Bucket(d, p, 32, None, 1.0, 1.0, "dense") for d in (0, 8) for p in (0, 8)
                    if d + p)  # fmt: skip
    ps = PlanSet("tiny", "cpu", 16, (0, 8), (0, 8), (32,), buckets, 32, kv_cache_dtype="float32")
    path = ps.save(tmp_path / "set")
    fwd = PipelineForward(str(path), llm.engine.model, llm.engine.ops)
    assert fwd.executors == {}
    assert all(fwd.executor_for(t, d, 32.0) is None for t, d in ((8, 8), (16, 8), (8, 0)))


def test_all_dense_plan_set_keeps_the_models_own_forward(
    tiny_llama: str, dense: list, tmp_path: Path
) -> None:
    """A plan set that says dense for every shape (the shipped H200 one) leaves the engine on the
    sequential mode's code path: the runner calls the model itself, with no per-iteration lookup,
    and the engine says so."""
    from runtime.config import ModelConfig, read_json

    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama) / "config.json"))
    buckets = tuple(Bucket(d, p, c, None, 1.0, 1.0, "dense") for d in (0, 1, 4)
                    for p in (0, 128) for c in (16, 64) if d + p)  # fmt: skip
    ps = PlanSet("tiny", "cpu", 16, (0, 1, 4), (0, 128), (16, 64), buckets, 64,
                 signature_of(cfg, 4), kv_cache_dtype="float32")  # fmt: skip
    path = ps.save(tmp_path / "dense")
    llm = LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64,
              pipeline=str(path))  # fmt: skip
    assert llm.engine.runner.forward is llm.engine.model
    assert llm.engine.pipeline_summary is not None
    assert "10 buckets, 10 dense, 0 plans: the dense forward" in llm.engine.pipeline_summary
    outs = llm.generate(PROMPTS, SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
    assert [o.token_ids for o in outs] == [o.token_ids for o in dense]
    # a set with plans installs the pipeline's forward
    with_plans = make_set(signature_of(cfg, 4)).save(tmp_path / "plans")
    llm2 = LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64,
               pipeline=str(with_plans))  # fmt: skip
    assert type(llm2.engine.runner.forward).__name__ == "PipelineForward"
    assert llm2.engine.pipeline_summary == "plan set for cpu: 10 buckets, 2 dense, 2 plans"


# ---------------------------------------------------------------- the KV cache dtype of a set
def test_kv_cache_dtype_round_trips_and_is_validated(tmp_path: Path) -> None:
    path = make_set(kv="float8_e4m3fn").save(tmp_path / "fp8")
    assert json.loads(path.read_text())["kv_cache_dtype"] == "float8_e4m3fn"
    assert PlanSet.load(path).kv_cache_dtype == "float8_e4m3fn"
    d = json.loads(path.read_text())
    del d["kv_cache_dtype"]  # a set written before the field: searched over bf16
    path.write_text(json.dumps(d))
    assert PlanSet.load(path).kv_cache_dtype == "bfloat16"
    d["kv_cache_dtype"] = "fp8"  # the engine option's spelling, not a dtype name
    path.write_text(json.dumps(d))
    with pytest.raises(PlanError, match="kv_cache_dtype 'fp8' is not one of"):
        PlanSet.load(path)


def test_default_finds_the_searched_set_of_the_engines_kv_dtype(tmp_path: Path) -> None:
    sig = {"hidden_size": 64, "num_layers": 2}
    make_set(sig, "NVIDIA H200", kv="bfloat16").save(tmp_path / "a-bf16")
    make_set(sig, "NVIDIA H200", kv="float8_e4m3fn").save(tmp_path / "b-fp8")
    bf16 = searched_plan_set(sig, "NVIDIA H200", tmp_path, "bfloat16")
    fp8 = searched_plan_set(sig, "NVIDIA H200", tmp_path, "float8_e4m3fn")
    assert bf16 is not None and bf16.kv_cache_dtype == "bfloat16"
    assert fp8 is not None and fp8.kv_cache_dtype == "float8_e4m3fn"
    assert searched_plan_set(sig, "NVIDIA H200", tmp_path, "float16") is None


def test_engine_refuses_a_plan_set_of_another_kv_dtype(tiny_llama: str, tmp_path: Path) -> None:
    """A named plan set searched over another KV cache than the engine's is refused at start-up
    with what to do; the same engine with a set of its own dtype runs it."""
    from runtime.config import ModelConfig, read_json

    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama) / "config.json"))
    f32 = make_set(signature_of(cfg, 4)).save(tmp_path / "f32")
    with pytest.raises(PlanError, match="searched over a float32 KV cache, this engine's is "
                       "float8_e4m3fn: run `nanolang tune --kv-cache-dtype fp8"):  # fmt: skip
        LLM(tiny_llama, dtype="float32", device="cpu", kv_cache_dtype="fp8", pipeline=str(f32))
    fp8 = make_set(signature_of(cfg, 4), kv="float8_e4m3fn").save(tmp_path / "fp8")
    llm = LLM(tiny_llama, dtype="float32", device="cpu", kv_cache_dtype="fp8",
              max_num_batched_tokens=64, pipeline=str(fp8))  # fmt: skip
    assert llm.engine.runner.forward.planset.kv_cache_dtype == "float8_e4m3fn"  # type: ignore[union-attr]
    outs = llm.generate(PROMPTS[:2], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
    assert all(len(o.token_ids) == 4 for o in outs)
