#!/usr/bin/env bash
# Decode-sized GEMMs: cuBLAS against kernels/triton/linear.py's tiles, in one GPU call (one H200),
# everything under $OUT:
#  1. bench/skinny_linear.py (T_PROBE s): every projection of Llama-3-8B and of 70B's TP=2 slice at
#     decode row counts, cuBLAS against each tile config; the winners (>= 3% faster, as accurate as
#     torch's own product) merged into a copy of the shipped table (the row buckets not probed
#     keep their entries) as OUT/linear_configs.json and copied over the checkout's
#     kernels/triton/linear_configs.json for step 2 (bring it back into the repository by hand
#     from OUT after the call: the device copy is thrown away);
#  2. Llama-3-8B (random weights), bf16 KV, WORKLOADS at REQUESTS, one process: the engine with
#     torch's linear, then with the tiles (--linear default,triton), each after WARMUP untimed
#     requests; the seconds left of T_TOTAL (SIGINT at the end keeps finished engines).
# Usage (repo root, lark importable): OUT=/tmp/o bash bench/linear_call.sh
set -u
OUT=${OUT:-/tmp/linear_call}
T_TOTAL=${T_TOTAL:-300}
T_PROBE=${T_PROBE:-150}
WORKLOADS=${WORKLOADS:-512/1024:256,1024/512:256}
WARMUP=${WARMUP:-32}
ROWS=${ROWS:-64,128,256,512,1024}
MODELS=${MODELS:-llama-3-8b,llama-3-70b-tp2}
START=$SECONDS
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null | tee "$OUT/device.txt"

# start from the shipped table: a probe of some row counts keeps the other rows' winners
cp kernels/triton/linear_configs.json "$OUT/linear_configs.json"
timeout -s INT "$T_PROBE" python bench/skinny_linear.py --rows "$ROWS" --models "$MODELS" \
    --out "$OUT/skinny_linear.json" --write-table "$OUT/linear_configs.json" \
    > "$OUT/probe.log" 2>&1
echo "probe: rc $? after $((SECONDS - START)) s"; tail -n 2 "$OUT/probe.log"
if [ ! -f "$OUT/skinny_linear.json" ]; then
    echo "engines: skipped (the probe measured nothing)"; exit 0
fi
cp "$OUT/linear_configs.json" kernels/triton/linear_configs.json
LEFT=$((T_TOTAL - (SECONDS - START)))
if [ "$LEFT" -lt 60 ]; then
    echo "engines: skipped, $LEFT s left"; exit 0
fi
echo "engines: torch's linear, then the tiles, $LEFT s left"
timeout -s INT "$LEFT" python -m runtime.bench --model llama-3-8b --workloads "$WORKLOADS" \
    --warmup-requests "$WARMUP" --linear default,triton --out "$OUT/engines.json" \
    > /dev/null 2> "$OUT/engines_log.txt"
echo "engines: rc $? after $((SECONDS - START)) s"
grep -v "^ " "$OUT/engines_log.txt" | grep "\[bench\]\|rror" | cut -c1-300
