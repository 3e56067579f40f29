#!/usr/bin/env bash
# Does a run on a fresh Triton cache still compile inside its timed part? One GPU call (one H200),
# everything under $OUT:
#  1. 512/512 x REQUESTS with an empty TRITON_CACHE_DIR, then the same again on the now warm
#     cache, each in its own process (2026-11-30, before the kernels' per-batch arguments were
#     left unspecialised: 21,316 against 24,749 total tok/s, mixed iterations 282 against 182 ms,
#     24 kernel variants compiled); the variants each run compiled, by kernel;
#  2. the paged-attention kernel tests on the GPU (the decorators changed).
# Usage (repo root, lark and llguidance importable): OUT=/tmp/o bash bench/fresh_cache_call.sh
set -u
OUT=${OUT:-/tmp/fresh_cache}
REQUESTS=${REQUESTS:-256}
EXTRA=${EXTRA:-}  # more runtime.bench flags (the CPU dry run: a tiny model, --device cpu, ...)
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
CACHE=$(mktemp -d /tmp/triton-fresh.XXXX)
for pass in fresh warm; do
    TRITON_CACHE_DIR=$CACHE timeout -s INT "${T_RUN:-90}" python -m runtime.bench \
        --workloads "512/512:$REQUESTS" --warmup-requests 32 --out "$OUT/$pass.json" $EXTRA \
        > /dev/null 2> "$OUT/$pass.log"
    echo "$pass: rc $?"
    grep "\[bench\]" "$OUT/$pass.log" | cut -c1-200
    python3 - "$CACHE" "$OUT/$pass-variants.json" <<'PY'
import collections, glob, json, sys
names = collections.Counter()
for path in glob.glob(f"{sys.argv[1]}/*/*.json"):
    if "__grp__" in path:
        continue
    try:
        name = json.load(open(path)).get("name")
    except (OSError, ValueError):
        continue
    if name:
        names[name] += 1
json.dump(dict(names), open(sys.argv[2], "w"), indent=1)
print("variants in the cache:", sum(names.values()), dict(names))
PY
done
timeout -s INT "${T_TESTS:-120}" python -m pytest -q -p no:cacheprovider \
    tests/kernels/test_triton_paged_attention.py tests/kernels/test_decode_choice.py \
    > "$OUT/kernel-tests.txt" 2>&1
echo "kernel tests: rc $?"; tail -n 2 "$OUT/kernel-tests.txt"
