#!/usr/bin/env bash
# Issue 19 over the fp8 KV cache with today's decode kernels, in one GPU call (one H200, <= 600 s),
# everything under $OUT. The call (from /work/main, nothing carried but the wheels):
#   run(kind="nvidia-h200", timeout_s=600, carry=[".whl"], command=
#     "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
#      --target /tmp/site .whl/lark-*.whl .whl/llguidance-*.whl && export PYTHONPATH=/tmp/site
#      && OUT=$OUT/nf bash bench/nanoflow_fp8_call.sh")
# Steps (each under its own `timeout`, so a slow one still leaves the others' files; OUT/tune
# comes back as OUT/tune.tgz):
#  1. tune (T_TUNE s): attention alone re-measured over an fp8 KV buffer with this build's kernels
#     (decode and prefill, the SM budgets and sizes the search uses, and its interference with
#     every other operation), merged into the shipped bf16 profile's other timings
#     (`--reprofile attention`), then the search (HiGHS, or Gurobi where installed) of the fp8
#     buckets -> OUT/tune/{profile,planset}.json and the plans; the search's table in tune.log.
#  2. engines (the seconds left less T_VERIFY): Llama-3-8B (random weights), fp8 KV cache,
#     1024/512 then 512/1024, REQUESTS each, --max-num-seqs 1024, in ONE process: sequential,
#     nanoflow (OUT/tune's plan set; the shipped fp8 set if step 1 wrote none), sequential, each
#     engine after WARMUP untimed requests per workload -> OUT/engines.json (one record per
#     engine and workload, written as each finishes; SIGINT at the end keeps the finished ones).
#  3. verify (what is left, at least 30 s): the plan set's plans and candidates at 512+ decodes
#     of contexts 1024-2048, no prefill, measured over an fp8 KV buffer against the search's
#     predicted times -> OUT/verify.json.
# CPU dry run (a tiny model; its stored profile is made first, the CPU overlaps nothing, so the
# search answers dense):
#   MODEL=$DIR STORED=/tmp/p/profile.json TUNE_GRID=--quick REQUESTS=8 WARMUP=2 \
#   EXTRA="--device cpu --scale 0.02" VERIFY_EXTRA="--device cpu --kv-gb 0.01 --min-decodes 0" \
#   OUT=/tmp/nf bash bench/nanoflow_fp8_call.sh
set -u
OUT=${OUT:-/tmp/nanoflow_fp8_call}
T_TOTAL=${T_TOTAL:-580}
T_TUNE=${T_TUNE:-120}
T_VERIFY=${T_VERIFY:-40}
REQUESTS=${REQUESTS:-1000}
WARMUP=${WARMUP:-16}
MODEL=${MODEL:-llama-3-8b}
STORED=${STORED:-runtime/pipeline/plans/searched/llama-3-8b-h200/profile.json}
# the stored profile's grid, less its 32-SM budget and context 4096 (the fp8 plans
# promoted so far all ran attention on 64 or 80 SMs; 1024/512 reads 1,024-1,536 tokens), plus
# 512 decodes and a 1,536 context; the buffer stays under 2^31 elements per K or V
TUNE_GRID=${TUNE_GRID:-"--attention-tokens 64,256,512,1024 --contexts 512,1024,1536,2048
  --attention-sms 48,64,80 --interference-tokens 256,1024 --kv-gb 8 --decode-points 0,256,512,1024
  --context-points 512,1024,1536,2048 --jobs 14 --time-limit 10"}
EXTRA=${EXTRA:-}  # more runtime.bench flags (the CPU dry run: --device cpu, --scale)
VERIFY_EXTRA=${VERIFY_EXTRA:-"--kv-gb 8 --min-decodes 512"}
START=$SECONDS
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
left() { echo $((T_TOTAL - (SECONDS - START))); }
# the device call returns only so many files from $OUT: the tune directory (profile, plan set,
# plans, candidates/) comes back as one archive, made on every exit
pack() { [ -d "$OUT/tune" ] && tar czf "$OUT/tune.tgz" -C "$OUT" tune && rm -rf "$OUT/tune"; }
trap pack EXIT
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null | tee "$OUT/device.txt"
git log -1 --format='%H %s' 2>/dev/null | cut -c1-120 > "$OUT/commit.txt"

# shellcheck disable=SC2086
timeout -s INT "$T_TUNE" python -m runtime.tune --model "$MODEL" --kv-cache-dtype fp8 \
    --profile "$STORED" --reprofile attention --solver auto --explore 0.1 $TUNE_GRID \
    --out "$OUT/tune" > "$OUT/tune.out" 2> "$OUT/tune.log"
echo "tune: rc $? after $((SECONDS - START)) s"
grep "re-measured\|buckets,\|error" "$OUT/tune.log" | cut -c1-300
# the engines' plan set: PLAN if given, else this call's search, else the shipped fp8 set
if [ -z "${PLAN:-}" ]; then
    PLAN=default
    [ -f "$OUT/tune/planset.json" ] && PLAN=$OUT/tune/planset.json
fi

LEFT=$(($(left) - T_VERIFY))
if [ "$LEFT" -lt 60 ]; then
    echo "engines: skipped, $LEFT s left"
else
    echo "engines: sequential, nanoflow, sequential (plan $PLAN), $LEFT s"
    # shellcheck disable=SC2086
    timeout -s INT "$LEFT" python -m runtime.bench --model "$MODEL" --kv-cache-dtype fp8 \
        --workloads "1024/512:$REQUESTS,512/1024:$REQUESTS" --max-num-seqs 1024 \
        --warmup-requests "$WARMUP" --mode sequential,nanoflow,sequential --plan "$PLAN" $EXTRA \
        --out "$OUT/engines.json" > /dev/null 2> "$OUT/engines_log.txt"
    echo "engines: rc $? after $((SECONDS - START)) s"
    grep -v "^ " "$OUT/engines_log.txt" | grep "\[bench\] nanolang\|rror\|pipeline" | cut -c1-300
fi

LEFT=$(left)
if [ "$LEFT" -lt 30 ] || [ ! -f "$OUT/tune/planset.json" ]; then
    echo "verify: skipped ($LEFT s left)"; exit 0
fi
# shellcheck disable=SC2086
timeout -s INT "$LEFT" python -m runtime.tune.verify --plan-set "$OUT/tune/planset.json" \
    --model "$MODEL" --kv-cache-dtype fp8 --buckets candidates --prefills 0 \
    --contexts 1024,1536,2048 $VERIFY_EXTRA --out "$OUT/verify.json" > /dev/null \
    2> "$OUT/verify.log"
echo "verify: rc $? after $((SECONDS - START)) s"
