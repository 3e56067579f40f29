#!/usr/bin/env bash
# The automated NanoFlow search on a GPU, for Llama-3-8B (random weights), in two device calls of
# under ten minutes each. Run from the project root on the GPU machine: runtime/ needs no extra
# wheels (no lark); without gurobipy the search uses scipy's HiGHS, which the machine has.
#   bash bench/nanoflow_search.sh tune  OUT   # profile (a few minutes), search, verify -> OUT/tune, OUT/verify.json
#   bash bench/nanoflow_search.sh bench OUT   # both modes on the fixed workloads with OUT/tune's plan set -> OUT/bench.json
# Then copy OUT/tune to runtime/pipeline/plans/searched/<model>-<device>/ so that --mode nanoflow
# picks it by default, and the JSON files to bench/results/.
set -euo pipefail
stage=${1:?tune or bench}
out=${2:?output directory}
model=${MODEL:-llama-3-8b}
mkdir -p "$out"
case "$stage" in
  tune)
    python -m runtime.tune --model "$model" --out "$out/tune" --solver auto 2> "$out/tune.log" \
      || { tail -20 "$out/tune.log"; exit 1; }
    tail -5 "$out/tune.log"
    python -m runtime.tune.verify --plan-set "$out/tune/planset.json" --model "$model" \
      --buckets all --out "$out/verify.json" > /dev/null
    ;;
  bench)
    python -m runtime.bench --model "$model" --num-requests 256 --workloads 512/1024,1024/512,sharegpt \
      --mode sequential,nanoflow --plan "$out/tune/planset.json" --out "$out/bench.json" > /dev/null
    ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
