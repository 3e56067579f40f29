#!/usr/bin/env bash
# Tensor-parallel runs on a two-GPU machine, in priority order; everything lands under $OUT.
#   bash bench/tp_run.sh test     # NCCL: TP=2 against TP=1 tokens on a tiny model, a killed rank
#   bash bench/tp_run.sh 8b       # Llama-3-8B (random weights) at TP=2, then TP=1 (WARMUP each)
#   bash bench/tp_run.sh 70b      # Llama-3-70B (random weights) at TP=2
#   bash bench/tp_run.sh 70bmodes # Llama-3-70B at TP=2, sequential then nanoflow (network stage)
#   bash bench/tp_run.sh verify   # the network stage's forward against its prediction (70B TP=2)
#   bash bench/tp_run.sh samerun  # vLLM at TP=2 (staged in $VLLM_SITE), then nanolang's modes
#                                 # (MODES, default nanoflow,sequential), each engine after WARMUP
#                                 # (16) untimed requests: one process, one JSON
#   bash bench/tp_run.sh symm     # all-reduce latency: NCCL against symmetric-memory one-/two-shot
#   bash bench/tp_run.sh symmtest # the engine's symmetric-memory all-reduce on two GPUs (tests);
#                                 # when they pass, later steps run with --allreduce symm_mem
#   bash bench/tp_run.sh profile  # Llama-3-70B at TP=2, sequential: rank 0 profiled over a
#                                 # window of mixed iterations (PROFILE_MIXED: skip,window) and,
#                                 # in a second process, of decode steps (PROFILE_DECODE)
#   bash bench/tp_run.sh pair     # Llama-3-70B at TP=2, MODES (nanoflow,sequential) in one
#                                 # process, each engine after WARMUP untimed requests
# ALLREDUCE (nccl, or symm_mem) is every nanolang engine's --allreduce (symmtest may set it).
# Steps may be combined: `bash bench/tp_run.sh test 8b`. Each step has its own time limit
# (seconds, from the environment) so that one slow step still leaves the others' results.
# NVLink multicast stays off (the workers set NCCL_NVLS_ENABLE=0 themselves too).
set -u
OUT=${OUT:-/tmp/tp_out}
LOGS=/tmp/tp_logs  # per-step logs, gathered into $OUT/logs.txt (few files come back from $OUT)
mkdir -p "$OUT/bench" "$LOGS"
# the .stdout files hold what peers log there (vLLM) before the records' JSON
trap 'tail -n 400 "$LOGS"/*.log "$LOGS"/*.stdout > "$OUT/logs.txt" 2>/dev/null' EXIT
export NCCL_NVLS_ENABLE=0
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
WORKLOADS=${WORKLOADS:-1024/512,512/1024}
REQUESTS=${REQUESTS:-256}
REQUESTS_70B=${REQUESTS_70B:-$REQUESTS}
T_TEST=${T_TEST:-150}
T_8B=${T_8B:-330}
T_70B=${T_70B:-400}
T_VERIFY=${T_VERIFY:-120}
T_SAMERUN=${T_SAMERUN:-590}
T_SYMM=${T_SYMM:-60}
MODEL_SR=${MODEL_SR:-llama-3-70b}  # the samerun step's model
MODES=${MODES:-nanoflow,sequential}
VLLM_SITE=${VLLM_SITE:-/tmp/vsite}
TEST_K=${TEST_K:-}  # a pytest -k expression to run part of the GPU tests
ALLREDUCE=${ALLREDUCE:-nccl}
MAX_SEQS=${MAX_SEQS:-256}  # --max-num-seqs (the largest CUDA graph bucket too)
MAX_SEQS_70B=${MAX_SEQS_70B:-$MAX_SEQS}
read -r -a EXTRA <<< "${BENCH_EXTRA:-}"  # more bench arguments (a CPU dry run of this script)
EAGER=()  # set to --enforce-eager below when TP works eagerly but not with CUDA graphs

{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv; nvidia-smi topo -m; \
  python3 -c "import torch; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version())"; \
  env | grep -E '^(NCCL|TORCH_SYMM|NVSHMEM)' ; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

bench() {  # bench NAME LIMIT ARGS...: one benchmark process, its JSON and log under $OUT
  local name=$1 limit=$2
  shift 2
  echo "== $name: python -m runtime.bench $* --allreduce $ALLREDUCE" | tee -a "$OUT/steps.txt"
  local start=$SECONDS
  timeout "$limit" python3 -m runtime.bench "$@" --allreduce "$ALLREDUCE" "${EXTRA[@]}" \
    --out "$OUT/bench/$name.json" \
    > "$LOGS/$name.stdout" 2> >(tee "$LOGS/$name.log" | grep -E '^\[bench\]|error|Error' >&2)
  echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
}

script() {  # script NAME LIMIT FILE: a bench/ script writing $OUT/bench/<FILE>.json, its log under $LOGS
  local name=$1 limit=$2 file=$3
  echo "== $name: python3 bench/$file.py" | tee -a "$OUT/steps.txt"
  local start=$SECONDS
  timeout "$limit" python3 "bench/$file.py" --out "$OUT/bench/${file//_/-}.json" > "$LOGS/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
}

test_record() {  # test_record TXT JSON COMMAND: pytest's per-test outcomes in TXT as a record
  TEST_CMD=$3 python3 - "$1" "$2" <<'PY'
import datetime, json, os, re, subprocess, sys
text = open(sys.argv[1]).read()
outcome = {m[1]: m[0] for m in re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED)\S* (\S+)", text, re.M)}
outcome.update({m[0]: m[1] for m in re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", text, re.M)})
gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                      capture_output=True, text=True).stdout.split("\n")
json.dump({"command": os.environ["TEST_CMD"],
           "device": " + ".join(g for g in gpus if g), "date": datetime.date.today().isoformat(),
           "outcomes": outcome, "summary": text.strip().splitlines()[-1] if text.strip() else ""},
          open(sys.argv[2], "w"), indent=2)
PY
}

for step in "$@"; do
  case $step in
    test)
      echo "== test" | tee -a "$OUT/steps.txt"
      start=$SECONDS
      timeout "$T_TEST" python3 -m pytest -q -p no:cacheprovider -rA ${TEST_K:+-k "$TEST_K"} \
        tests/runtime/distributed/test_gpu_tensor_parallel.py > "$OUT/gpu_test.txt" 2>&1
      echo "== test: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
      tail -15 "$OUT/gpu_test.txt"
      test_record "$OUT/gpu_test.txt" "$OUT/bench/gpu-tests.json" \
        "python3 -m pytest -q -p no:cacheprovider -rA ${TEST_K:+-k '$TEST_K' }tests/runtime/distributed/test_gpu_tensor_parallel.py"
      if grep -q "FAILED.*\[graphs-" "$OUT/gpu_test.txt"; then  # is it the graphs?
        timeout 60 python3 -m pytest -q -p no:cacheprovider -rA -k eager \
          tests/runtime/distributed/test_gpu_tensor_parallel.py >> "$OUT/gpu_test.txt" 2>&1
        if grep -q "PASSED.*\[eager\]" "$OUT/gpu_test.txt"; then
          echo "== TP works eagerly but not with CUDA graphs: benchmarks run --enforce-eager" \
            | tee -a "$OUT/steps.txt"
          EAGER=(--enforce-eager)
        fi
      fi
      if ! grep -q "PASSED.*test_two_gpus_match_one" "$OUT/gpu_test.txt"; then
        echo "== no TP=2 test passed: the benchmarks are skipped" | tee -a "$OUT/steps.txt"
        exit 1
      fi
      ;;
    8b)  # two processes, one JSON each: a time-out in the second keeps the first (TP=2 first)
      for tp in ${TP_ORDER:-2 1}; do
        bench "llama-3-8b-tp$tp" "$T_8B" --model llama-3-8b --workloads "$WORKLOADS" \
          --num-requests "$REQUESTS" --max-num-seqs "$MAX_SEQS" --tp "$tp" \
          --warmup-requests "${WARMUP:-16}" "${EAGER[@]}"
      done
      ;;
    70b)
      bench llama-3-70b-tp2 "$T_70B" --model llama-3-70b --workloads "$WORKLOADS" \
        --num-requests "$REQUESTS_70B" --max-num-seqs "$MAX_SEQS_70B" --tp 2 "${EAGER[@]}"
      ;;
    70bmodes)  # one process per mode: a time-out in the second keeps the first
      for mode in ${MODE_ORDER:-sequential nanoflow}; do
        bench "llama-3-70b-tp2-$mode" "$T_70B" --model llama-3-70b --workloads "$WORKLOADS" \
          --num-requests "$REQUESTS_70B" --max-num-seqs "$MAX_SEQS_70B" --tp 2 --mode "$mode" \
          "${EAGER[@]}"
      done
      ;;
    verify)
      script verify "$T_VERIFY" tp_network_verify
      ;;
    samerun)  # vLLM first (never measured at TP=2 before), capped like nanolang: at most
      # MAX_SEQS_70B sequences and CUDA graphs up to that batch (its default captures up to 512)
      vllm_args="{\"vllm\": {\"max_num_seqs\": $MAX_SEQS_70B, \"compilation_config\": "
      vllm_args+="{\"max_cudagraph_capture_size\": $MAX_SEQS_70B}}}"
      bench "$MODEL_SR-tp2-samerun" "$T_SAMERUN" --model "$MODEL_SR" --workloads "$WORKLOADS" \
        --num-requests "$REQUESTS_70B" --max-num-seqs "$MAX_SEQS_70B" --tp 2 --mode "$MODES" \
        --peer vllm --peer-site "vllm=$VLLM_SITE" --peers-first --peer-args "$vllm_args" \
        --warmup-requests "${WARMUP:-16}" --peer-timeout "${PEER_TIMEOUT:-300}" "${EAGER[@]}"
      ;;
    symm)
      script symm "$T_SYMM" symm_mem_allreduce
      ;;
    symmtest)  # -v (over the project's -q): each test's outcome as it ends (a time-out still
      # leaves the earlier ones)
      echo "== symmtest" | tee -a "$OUT/steps.txt"
      start=$SECONDS
      tp_tests=tests/runtime/distributed/test_gpu_tensor_parallel.py
      symm_tests=(tests/runtime/distributed/test_gpu_allreduce.py
                  "$tp_tests::test_two_gpus_match_one_in_float32[symm-graphs-async]")
      if [ "${SYMM_SEARCH:-1}" = 1 ]; then  # SYMM_SEARCH=0: not the search under symm_mem
        symm_tests+=("$tp_tests::test_the_network_search_on_two_gpus_matches_one[symm-search]")
      fi
      timeout "${T_SYMMTEST:-150}" python3 -m pytest -o addopts= -v -p no:cacheprovider -rA \
        "${symm_tests[@]}" > "$OUT/gpu_symm_test.txt" 2>&1
      echo "== symmtest: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
      test_record "$OUT/gpu_symm_test.txt" "$OUT/bench/gpu-symm-tests.json" \
        "python3 -m pytest -o addopts= -v -p no:cacheprovider -rA ${symm_tests[*]}"
      # the all-reduce against NCCL and the engine's tokens against one GPU must have passed,
      # and nothing failed (the search test may be cut by the time limit); read from the
      # record, which takes pytest's summary lines and its verbose per-test lines alike
      if python3 - "$OUT/bench/gpu-symm-tests.json" <<'PY'
import json, sys
outcomes = json.load(open(sys.argv[1]))["outcomes"]
need = ("matches_nccl", "[symm-graphs-async]")
passed = all(any(k.endswith(n) and v == "PASSED" for k, v in outcomes.items()) for n in need)
sys.exit(0 if passed and not {"FAILED", "ERROR"} & set(outcomes.values()) else 1)
PY
      then
        ALLREDUCE=symm_mem
      fi
      echo "== later engines: --allreduce $ALLREDUCE" | tee -a "$OUT/steps.txt"
      ;;
    pair)  # one process: the modes' engines one after the other, each after a warm-up
      bench "llama-3-70b-tp2-$ALLREDUCE-pair" "$T_70B" --model llama-3-70b \
        --workloads "$WORKLOADS" --num-requests "$REQUESTS_70B" --max-num-seqs "$MAX_SEQS_70B" \
        --tp 2 --mode "$MODES" --warmup-requests "${WARMUP:-16}" "${EAGER[@]}"
      ;;
    profile)  # where a 70B TP=2 iteration's time goes (rank 0's kernels): mixed, then decode
      for window in "mixed:${PROFILE_MIXED:-2,6}" "decode:${PROFILE_DECODE:-300,12}"; do
        kind=${window%%:*} sw=${window#*:}
        bench "llama-3-70b-tp2-profile-$kind" "$T_70B" --model "${MODEL_70B:-llama-3-70b}" \
          --workloads "$WORKLOADS" --num-requests "$REQUESTS_70B" --max-num-seqs "$MAX_SEQS_70B" \
          --tp 2 --mode sequential --warmup-requests "${WARMUP:-16}" --profile-run \
          --profile-skip "${sw%,*}" --profile-window "${sw#*,}" "${EAGER[@]}"
      done
      ;;
    *)
      echo "unknown step $step (test, 8b, 70b, 70bmodes, verify, samerun, symm, symmtest, profile, pair)" >&2
      exit 2
      ;;
  esac
done
