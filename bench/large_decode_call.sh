#!/usr/bin/env bash
# Where a decode step at ~500-1,000 sequences goes, and the L2 prefetch probe, in one GPU call
# (one H200), everything under $OUT:
#  1. Llama-3-8B (random weights), 512/1024 x REQUESTS, bf16 KV then fp8 KV, each a throughput run
#     followed by a profiled window of decode-only steps (--profile-run, after SKIP iterations:
#     past the prefill of the first wave). Decode steps there took 31.9 ms (bf16, ~500 sequences)
#     and 47.0 ms (fp8, 1,000) on 2026-11-30, where KV bytes plus GEMM FLOPs give about 27-30 and
#     38-43: the profile's kernels by kind and kernel_gaps say which part is missing (T_BF16, T_FP8);
#  2. bench/l2_prefetch_probe.py (issue 20): the seconds left of T_TOTAL.
# Usage (repo root, lark and llguidance importable): OUT=/tmp/o bash bench/large_decode_call.sh
set -u
OUT=${OUT:-/tmp/large_decode}
T_TOTAL=${T_TOTAL:-420}
T_BF16=${T_BF16:-170}
T_FP8=${T_FP8:-150}
REQUESTS=${REQUESTS:-1000}
SKIP=${SKIP:-300}
WINDOW=${WINDOW:-16}
EXTRA=${EXTRA:-}  # more runtime.bench flags (the CPU dry run: a tiny model, --device cpu, ...)
START=$SECONDS
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null | tee "$OUT/device.txt"

for kv in auto fp8; do
    limit=$T_BF16
    [ "$kv" = fp8 ] && limit=$T_FP8
    timeout -s INT "$limit" python -m runtime.bench --workloads "512/1024:$REQUESTS" \
        --kv-cache-dtype "$kv" --warmup-requests 32 --profile-run --profile-skip "$SKIP" \
        --profile-window "$WINDOW" --out "$OUT/decode-$kv.json" $EXTRA \
        > /dev/null 2> "$OUT/decode-$kv.log"
    echo "decode $kv: rc $? after $((SECONDS - START)) s"
    grep "\[bench\]" "$OUT/decode-$kv.log" | cut -c1-200
done
LEFT=$((T_TOTAL - (SECONDS - START)))
if [ "$LEFT" -lt 30 ]; then
    echo "l2 probe: skipped, $LEFT s left"; exit 0
fi
timeout -s INT "$LEFT" python bench/l2_prefetch_probe.py --out "$OUT/l2_prefetch.json" \
    > "$OUT/l2_prefetch.log" 2>&1
echo "l2 probe: rc $? after $((SECONDS - START)) s"
tail -n 4 "$OUT/l2_prefetch.log" | cut -c1-250
