#!/usr/bin/env bash
# The fused rope + KV store (issue 18) on the GPU, one call (one H200), everything under $OUT:
#  1. bench/rope_store.py: fused against rotary + store_kv at 256 / 1,000 decode rows and an
#     8,192-token mixed batch, Llama-3-8B and 70B-TP2 heads, bf16 and fp8 caches (~1 min);
#  2. its tests on the GPU: the kernel at real sizes, under a CUDA graph, no recompile for new
#     batch sizes; the registry; the engine's tokens with and without it, CUDA graphs (~3 min).
# Usage (repo root; lark and llguidance importable for the engine test):
#   OUT=/tmp/o bash bench/rope_store_call.sh
# CPU dry run (Triton's interpreter): OUT=/tmp/o EXTRA="--batches decode:3 --cache-dtypes bf16
#   --cache-slots 512 --reps 1" bash bench/rope_store_call.sh
set -u
OUT=${OUT:-/tmp/rope_store}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# shellcheck disable=SC2086
timeout -s INT "${T_BENCH:-240}" python bench/rope_store.py --out "$OUT/rope_store.json" $EXTRA \
    > "$OUT/rope_store.log" 2>&1
echo "bench: rc $?"
tail -n 15 "$OUT/rope_store.log"
timeout -s INT "${T_TESTS:-300}" python -m pytest -q -p no:cacheprovider -rs \
    tests/kernels/test_triton_rotary_store_kv.py tests/kernels/test_registry.py \
    tests/kernels/test_triton_backend.py tests/kernels/test_rope_store_bench.py \
    tests/runtime/test_fused_rope_kv_store.py > "$OUT/tests.log" 2>&1
echo "tests: rc $?"
tail -n 25 "$OUT/tests.log"
