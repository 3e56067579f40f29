#!/usr/bin/env bash
# Float16 dots over the fp8 KV cache, in one GPU call (one H200), everything under $OUT:
#  1. the kernel tests of the decode choice and over fp8, the tiny engine with each choice, the
#     fp8 dots' tests, the paged attention tests (T_TESTS s: what finished is in tests.txt);
#  2. bench/fp8_decode_ragged.py: the whole-GPU decode kernels over fp8 on uniform and ragged
#     batches; its pick (gather, tma or tma-items) is the new engine's whole-GPU kernel (T_RAGGED);
#  3. Llama-3-8B (random weights), fp8 KV cache, 1024/512 x REQUESTS, sequential, in one process:
#     the new decode (PICK:fp16) first, then the old (gather:q, the widening to bf16), each after
#     WARMUP untimed requests (the first engine of a process has run slower; the new one takes
#     that place). It gets the seconds left of T_TOTAL (SIGINT at the end keeps finished engines).
# Usage (repo root, lark and llguidance importable): OUT=/tmp/o bash bench/fp8_decode_call.sh
set -u
OUT=${OUT:-/tmp/fp8_call}
T_TOTAL=${T_TOTAL:-305}
T_TESTS=${T_TESTS:-70}
T_RAGGED=${T_RAGGED:-45}
REQUESTS=${REQUESTS:-1000}
WARMUP=${WARMUP:-32}
MODEL=${MODEL:-llama-3-8b}
EXTRA=${EXTRA:-}  # more runtime.bench flags (the CPU dry run: a tiny model, --device cpu, ...)
START=$SECONDS
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null | tee "$OUT/device.txt"

timeout -s INT "$T_TESTS" python -m pytest -q -p no:cacheprovider -o addopts= -rs \
    tests/kernels/test_decode_choice.py tests/kernels/test_fp8_attention_kernels.py \
    "tests/runtime/test_gpu_engine.py::test_fp8_decode_choices_follow_the_reference_backend" \
    tests/kernels/test_fp8_decode_dots.py \
    "tests/kernels/test_triton_paged_attention.py::test_paged_attention" \
    > "$OUT/tests.txt" 2>&1
echo "tests: rc $? after $((SECONDS - START)) s"; tail -n 3 "$OUT/tests.txt"

PICK=gather
if [ -z "$EXTRA" ]; then
    timeout -s INT "$T_RAGGED" python bench/fp8_decode_ragged.py --out "$OUT/fp8_decode_ragged.json"
    echo "ragged: rc $? after $((SECONDS - START)) s"
    PICK=$(python -c "import json,sys; print(json.load(open(sys.argv[1])).get('pick', 'gather'))" \
           "$OUT/fp8_decode_ragged.json" 2>/dev/null || echo gather)
fi
LEFT=$((T_TOTAL - (SECONDS - START)))
if [ "$LEFT" -lt 60 ]; then
    echo "engines: skipped, $LEFT s left"; exit 0
fi
echo "engines: new decode $PICK:fp16 against gather:q, $LEFT s left"
# shellcheck disable=SC2086
timeout -s INT "$LEFT" python -m runtime.bench --model "$MODEL" --kv-cache-dtype fp8 \
    --workloads "1024/512:$REQUESTS" --max-num-seqs 1024 --warmup-requests "$WARMUP" \
    --mode sequential --decode-attention "$PICK:fp16,gather:q" $EXTRA \
    --out "$OUT/fp8_decode_engine.json" > /dev/null 2> "$OUT/engine_log.txt"
echo "engines: rc $? after $((SECONDS - START)) s"
grep -v "^ " "$OUT/engine_log.txt" | grep "\[bench\]\|rror\|engine:" | cut -c1-400
