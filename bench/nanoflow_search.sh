#!/usr/bin/env bash
# The automated NanoFlow search on a GPU, for Llama-3-8B (random weights). Run from the project
# root on the GPU machine: runtime/ needs no extra wheels (no lark); without gurobipy the search
# uses scipy's HiGHS, which the machine has.
#   bash bench/nanoflow_search.sh tune  OUT  # profile, search, verify -> OUT/tune, OUT/verify.json
#   bash bench/nanoflow_search.sh bench OUT  # engines in the order sequential, nanoflow,
#                                            # sequential (one process) on BENCH_WORKLOADS with
#                                            # OUT/tune's plan set, or the shipped one when OUT
#                                            # has none; OUT/bench.json grows after each engine
#   bash bench/nanoflow_search.sh candidates OUT  # the plan set's plans and candidates measured
#                                            # against dense, bf16 and fp8 KV, and a timeline of
#                                            # the best (OUT/candidates.json, OUT/timeline.json)
#   bash bench/nanoflow_search.sh check OUT  # bench, then candidates
#   bash bench/nanoflow_search.sh fp8   OUT  # the explore set's decode candidates (near misses
#                                            # kept by `nanolang tune --explore`) measured over
#                                            # bf16 and fp8 KV (OUT/explore-verify.json, one layer
#                                            # of each pass's best in OUT/timeline*.json), promoted
#                                            # over fp8 where they win (OUT/fp8set), then engines
#                                            # nanoflow, sequential over fp8 KV on BENCH_WORKLOADS
#                                            # (default 1024/512, 1000 requests; each serves
#                                            # WARMUP_REQUESTS, default 32, untimed ones first)
#   bash bench/nanoflow_search.sh all   OUT  # tune and bench in one call (one machine start);
#                                            # OUT/tune packed as OUT/tune.tgz
# verify also measures the decode buckets of 512+ sequences over an fp8 KV buffer (verify.json's
# fp8_buckets) and traces one layer of the measured best plan against dense (timeline.json).
# Then unpack OUT/tune into runtime/pipeline/plans/searched/<model>-<device>/ so that
# --mode nanoflow picks it by default, and copy the JSON files to bench/results/.
# PROFILE_GRID overrides the profile's grid (options of python -m runtime.tune); KV_GB the
# shared KV buffer; SMOKE=1 profiles the largest shapes first. BENCH_REQUESTS, BENCH_SEQS
# (--max-num-seqs), BENCH_TIMEOUT and CANDIDATES_TIMEOUT (seconds; 0: none) shape a short call.
set -euo pipefail
stage=${1:?tune, bench or all}
out=${2:?output directory}
model=${MODEL:-llama-3-8b}
kv_gb=${KV_GB:-8}  # under 2^31 elements per K or V buffer (larger ones faulted beside other work)
grid=${PROFILE_GRID:-"--tokens 16,128,512,1024,2048 --attention-tokens 64,256,1024
  --contexts 512,1024,2048,4096 --attention-sms 32,48,64,80 --interference-tokens 256,1024"}
jobs=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
mkdir -p "$out"
stamp() { echo "[nanoflow_search] $(date -u +%T) $*" | tee -a "$out/log.txt" >&2; }

smoke() {
  # the largest shapes and an interference pair on each kind of side first: a fault is rerun
  # with synchronous launches, which name the operation (and hide concurrency faults)
  local args=(--model "$model" --profile-only --out "$out/smoke" --tokens 2048
    --attention-tokens 1024 --contexts 2048 --attention-sms 48 --interference-tokens 1024
    --kv-gb "$kv_gb")
  stamp "smoke"
  python -m runtime.tune "${args[@]}" 2>> "$out/log.txt" && return 0
  stamp "smoke failed; again with CUDA_LAUNCH_BLOCKING=1"
  CUDA_LAUNCH_BLOCKING=1 python -m runtime.tune "${args[@]}" 2>> "$out/log.txt"
  grep -v '^ ' "$out/log.txt" | tail -8
  exit 1
}

tune() {
  stamp "tune: profile and search"
  # shellcheck disable=SC2086
  python -m runtime.tune --model "$model" --out "$out/tune" --solver auto --jobs "$jobs" $grid \
    --kv-gb "$kv_gb" 2> "$out/tune.log" || { tail -20 "$out/tune.log"; exit 1; }
  tail -3 "$out/tune.log"
  stamp "verify: every bucket's dense forward and plan against the prediction"
  python -m runtime.tune.verify --plan-set "$out/tune/planset.json" --model "$model" \
    --kv-gb "$kv_gb" --buckets all --contexts 1024 --min-decodes 256 --fp8-min-decodes 512 \
    --timeline "$out/timeline.json" --out "$out/verify.json" > /dev/null \
    2>> "$out/log.txt"
}

plan_set() {  # this call's plan set, else the shipped one ("default")
  if [ -f "$out/tune/planset.json" ]; then echo "$out/tune/planset.json"; else echo default; fi
}

bench() {
  # the first engine of a process (and of a fresh machine) runs slower: Triton compiles and
  # autotunes its kernels (2026-11-29: nanoflow first, 0.80x with the dense forward in both
  # modes). Sequential runs before and after nanoflow, so either order effect shows.
  local plan
  plan=$(plan_set)
  stamp "bench: sequential, nanoflow, sequential (plan: $plan)"
  timeout "${BENCH_TIMEOUT:-0}" python -m runtime.bench --model "$model" \
    --num-requests "${BENCH_REQUESTS:-256}" \
    --max-num-seqs "${BENCH_SEQS:-1024}" \
    --workloads "${BENCH_WORKLOADS:-512/1024,1024/512,sharegpt}" \
    --mode sequential,nanoflow,sequential --plan "$plan" --out "$out/bench.json" \
    > /dev/null 2>> "$out/log.txt"
}

candidates() {
  local plan
  plan=$(plan_set)
  [ "$plan" = default ] && plan=runtime/pipeline/plans/searched/$model-h200/planset.json
  stamp "candidates: plans and candidates against dense, bf16 and fp8 KV ($plan)"
  timeout "${CANDIDATES_TIMEOUT:-0}" python -m runtime.tune.verify --plan-set "$plan" \
    --model "$model" --kv-gb "$kv_gb" --buckets candidates --fp8-min-decodes 0 --timeline "$out/timeline.json" \
    --out "$out/candidates.json" > /dev/null 2>> "$out/log.txt"
}

fp8() {
  local set=runtime/pipeline/plans/searched/$model-h200/explore/planset.json plan=default
  stamp "fp8: candidates over bf16 and fp8 KV ($set)"
  timeout "${CANDIDATES_TIMEOUT:-0}" python -m runtime.tune.verify --plan-set "$set" \
    --model "$model" --kv-gb "$kv_gb" --buckets candidates --min-decodes "${FP8_MIN_DECODES:-512}" \
    --prefills 0 --contexts "${FP8_CONTEXTS:-1536,2048}" --fp8-min-decodes "${FP8_MIN_DECODES:-512}" \
    --timeline "$out/timeline.json" --out "$out/explore-verify.json" > /dev/null \
    2>> "$out/log.txt" || stamp "verify failed"
  if [ -f "$out/explore-verify.json" ] && python -m runtime.tune.promote --plan-set "$set" \
      --verify "$out/explore-verify.json" --out "$out/fp8set" >> "$out/log.txt" 2>&1 \
      && grep -q '"plan": "' "$out/fp8set/planset.json"; then
    plan=$out/fp8set/planset.json  # else the shipped fp8 set
  fi
  stamp "fp8: engines nanoflow, sequential over fp8 KV (plan: $plan)"
  timeout "${BENCH_TIMEOUT:-0}" python -m runtime.bench --model "$model" --kv-cache-dtype fp8 \
    --num-requests "${BENCH_REQUESTS:-1000}" --max-num-seqs "${BENCH_SEQS:-1024}" \
    --workloads "${BENCH_WORKLOADS:-1024/512}" --warmup-requests "${WARMUP_REQUESTS:-32}" \
    --mode nanoflow,sequential --plan "$plan" --out "$out/bench-fp8.json" > /dev/null \
    2>> "$out/log.txt"
}

case "$stage" in
  tune) tune ;;
  bench) bench ;;
  candidates) candidates ;;
  fp8) fp8 || stamp "fp8 bench failed"; stamp done ;;
  check)
    bench || stamp "bench failed"
    candidates || stamp "candidates failed"
    stamp done
    ;;
  all)
    [ -n "${SMOKE:-}" ] && smoke
    tune
    tar -czf "$out/tune.tgz" -C "$out" tune
    bench || stamp "bench failed"
    stamp done
    ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
