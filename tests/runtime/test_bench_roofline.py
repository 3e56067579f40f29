"""The workload roofline: a bound from the workload, the model and the KV capacity alone."""

from __future__ import annotations

import pytest

from runtime.bench.roofline import (
    Ceilings,
    IterationRecord,
    forward_flops,
    rooflines,
    weight_bytes,
    workload_roofline,
)
from runtime.config import ModelConfig
from runtime.model.loader import resolve_model

CFG = ModelConfig.from_hf({
    "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1,
})  # fmt: skip
CEIL = Ceilings(gemm_flops=1e6, hbm_bytes_per_s=1e4)


def test_hand_computed_bound() -> None:
    lengths = [(4, 3), (4, 3)]
    roof = workload_roofline(lengths, CFG, CEIL, kv_elem=2, weight_elem=2, kv_capacity_tokens=7)
    # the cache holds one 7-token sequence: 6 output tokens need 6 iterations
    assert (roof.max_batch, roof.min_iterations) == (1, 6)
    kv_per_token = 2 * 2 * 1 * 4 * 2  # k and v, layers, kv heads, head_dim, bytes
    decode_ctx = 2 * (5 + 6)  # decode tokens at positions 4 and 5 attend 5 and 6 keys
    mem = (6 * weight_bytes(CFG, 2) + kv_per_token * (decode_ctx + 2 * 14)) / 1e4
    pairs = 2 * (10 + 11)
    # GEMM weights per layer: q, k, v (8 x (8 + 4 + 4)), o (8 x 8), gate, up, down (3 x 8 x 16)
    layer = 8 * 16 + 8 * 8 + 3 * 8 * 16
    assert layer == 576
    # the layers over all 14 tokens, the LM head over the 6 output tokens' rows, attention
    comp = (2 * 2 * layer * 14 + 2 * 100 * 8 * 6 + 4 * 2 * 4 * 2 * pairs) / 1e6
    assert roof.memory_seconds == pytest.approx(mem)
    assert roof.compute_seconds == pytest.approx(comp)
    assert roof.tokens_per_s == pytest.approx(14 / max(mem, comp))
    # the serial floor: the longer of the compute time and the 6 iterations' weight reads, plus
    # the KV cache's bytes (here the weights bind: a tiny model's FLOPs at 1 MFLOP/s take less)
    assert roof.kv_seconds == pytest.approx(kv_per_token * (decode_ctx + 2 * 14) / 1e4)
    assert roof.weights_seconds == pytest.approx(6 * weight_bytes(CFG, 2) / 1e4)
    assert roof.weights_seconds > comp
    assert roof.serial_seconds == pytest.approx(roof.weights_seconds + roof.kv_seconds)
    slow = workload_roofline(lengths, CFG, Ceilings(1e3, 1e4), 2, 2, kv_capacity_tokens=7)
    assert slow.compute_seconds > slow.weights_seconds  # a GEMM rate 1,000x slower: compute binds
    assert slow.serial_seconds == pytest.approx(slow.compute_seconds + slow.kv_seconds)


def test_forward_flops_leave_the_embedding_out_and_the_lm_head_to_sampled_rows() -> None:
    """Every row sampled: 2 x the parameters but the embedding table and the norms' weights;
    no row sampled: the LM head not at all (Llama-3-8B's shapes, untied)."""
    _, cfg = resolve_model("llama-3-8b")
    v, h = cfg.vocab_size, cfg.hidden_size
    norms = (2 * cfg.num_layers + 1) * h
    assert forward_flops(cfg, 1, 1, 0) == 2 * (cfg.num_parameters - v * h - norms)
    assert forward_flops(cfg, 1000, 0, 0) == 1000 * 2 * (cfg.num_parameters - 2 * v * h - norms)
    assert forward_flops(cfg, 0, 0, 10) == 10 * 4 * cfg.num_heads * cfg.head_dim * cfg.num_layers
    # about 13% fewer FLOPs on prompt rows than 2 x all parameters
    assert 0.86 < forward_flops(cfg, 1, 0, 0) / (2 * cfg.num_parameters) < 0.88


def test_the_tight_bound_is_below_memory_and_own_compute_but_not_nanoflows_compute_bound() -> None:
    """A compute-bound prompt iteration: the tight bound counts the run's own FLOPs (no
    embedding, the LM head on sampled rows), NanoFlow's compute roofline 2 x all parameters
    per token, so on a model whose tables are most of its parameters the tight bound is the
    higher of the two. (CI met this on the tiny test model when the CPU's copy bandwidth
    measured fast; the bench tests now check the tight bound against the memory roofline.)"""
    fast_memory = Ceilings(gemm_flops=1e6, hbm_bytes_per_s=1e12)
    pairs = 64 * 65 // 2
    prefill = [IterationRecord(num_tokens=64, num_seqs=1, kv_tokens_read=64, attn_pairs=pairs,
                               seconds=1.0)]  # fmt: skip
    roof = rooflines(prefill, CFG, fast_memory, elem=2, tokens=64)
    own_compute = 64 / (forward_flops(CFG, 64, 1, pairs) / 1e6)
    assert roof.tight_tokens_per_s == pytest.approx(own_compute)
    assert roof.tight_tokens_per_s <= roof.memory_tokens_per_s
    assert roof.tight_tokens_per_s > roof.compute_tokens_per_s  # 2 x all parameters per token
    assert roof.compute_tokens_per_s == pytest.approx(1e6 / (2 * CFG.num_parameters))


def test_the_serial_roofline_adds_kv_time_to_the_longer_of_flops_and_weights() -> None:
    """Two iterations: a prompt of 64 tokens (its FLOPs take longer than a weight read) and a
    decode of one sequence over 64 keys (the weight read takes longer). Each costs the longer of
    the two plus its KV bytes; the tight bound, which overlaps them, is never below it."""
    ceilings = Ceilings(gemm_flops=5e5, hbm_bytes_per_s=1e4)
    its = [IterationRecord(64, 1, 64, 64 * 65 // 2, 1.0), IterationRecord(1, 1, 64, 64, 1.0)]
    roof = rooflines(its, CFG, ceilings, elem=2, tokens=65)
    kv = 64 * (2 * 2 * 1 * 4 * 2) / 1e4  # 64 keys x (k, v x layers x kv heads x dim x bytes)
    weights = weight_bytes(CFG, 2) / 1e4
    prompt = forward_flops(CFG, 64, 1, 64 * 65 // 2) / 5e5
    decode = forward_flops(CFG, 1, 1, 64) / 5e5
    assert prompt > weights > decode  # one iteration of each kind
    serial = (prompt + kv) + (weights + kv)
    assert roof.serial_tokens_per_s == pytest.approx(65 / serial)
    assert roof.tight_tokens_per_s >= roof.serial_tokens_per_s


def test_more_kv_capacity_never_lowers_the_bound() -> None:
    lengths = [(50 + i, 20 + 3 * i) for i in range(40)]
    last = 0.0
    for cap in (100, 1_000, 10_000, 100_000):
        roof = workload_roofline(lengths, CFG, CEIL, 2, 2, cap)
        assert roof.tokens_per_s >= last
        last = roof.tokens_per_s
    assert roof.max_batch == 40 and roof.min_iterations == max(o for _, o in lengths)


def test_an_fp8_cache_moves_half_the_kv_bytes() -> None:
    lengths = [(300, 300)] * 8
    bf16 = workload_roofline(lengths, CFG, CEIL, 2, 2, 10**6)
    fp8 = workload_roofline(lengths, CFG, CEIL, 1, 2, 10**6)
    kv_bf16 = bf16.memory_seconds * 1e4 - bf16.min_iterations * weight_bytes(CFG, 2)
    kv_fp8 = fp8.memory_seconds * 1e4 - fp8.min_iterations * weight_bytes(CFG, 2)
    assert kv_fp8 == pytest.approx(kv_bf16 / 2)
