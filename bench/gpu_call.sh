#!/usr/bin/env bash
# The GPU session's device calls, by name, so that a session does not rebuild them by hand. Run on
# the GPU machine from the repository root (the `device` tool's working copy), one name per call:
#
#   bash bench/gpu_call.sh NAME        carry: [".whl"] (lark, llguidance, FlashInfer's JIT pair:
#                                      ../shared/tools/gpu-wheels.sh llguidance==1.5.0)
#
# Each call installs the carried wheels into /tmp/site (seconds), then runs one step of
# docs/performance.md's "For the next GPU session" and writes what it measured under $OUT.
# Peers (vLLM, SGLang) are staged by ../shared/tools/peers/README.md's calls first; `peers-*`
# calls expect /tmp/vsite and /tmp/vsite-sgl on the same warm machine.
set -euo pipefail
calls="tests tests-fi tests-paged split-probe-ragged split-ab cut-probe cut-ab argmax-ab copies-ab pdl-ab fi-prefill attn-1000 linear-profile linear-ab-1000 peers-1000-a peers-1000-b peers-1000 tune-mixed carve-probe tune-carve fi-partition tp-tests tp-table tp-pair"
name=${1:-}
if [[ " $calls " != *" $name "* || -z $name ]]; then
  echo "usage: bash bench/gpu_call.sh NAME, NAME one of: $calls (got '${name}')" >&2
  exit 2
fi
out=${OUT:?"the device tool's output folder"}
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:$PWD/bench:${PYTHONPATH:-}
peers=(--peer vllm,sglang --peer-site vllm=/tmp/vsite --peer-site sglang=/tmp/vsite-sgl)
export VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader | tee "$out/gpu.txt"
git rev-parse --short HEAD > "$out/commit.txt" 2>/dev/null || true

case $name in
  tests)  # the GPU tests written since the last GPU run, FlashInfer's aside
    timeout 560 python3 -m pytest -q -x -p no:cacheprovider tests/kernels/test_cublaslt_backend.py \
      tests/kernels/test_registry.py tests/runtime/pipeline/test_gpu_pipeline.py \
      tests/runtime/tune/test_gpu_profiler.py 2>&1 | tee "$out/tests.log" ;;
  tests-fi)  # FlashInfer's (its JIT compiles at first use: minutes on a fresh machine)
    timeout 560 python3 -m pytest -q -x -p no:cacheprovider tests/kernels/test_flashinfer_prefill.py \
      tests/kernels/test_attention_backends.py tests/kernels/test_flashinfer_backend.py \
      tests/runtime/test_gpu_attention_backends.py 2>&1 | tee "$out/tests-fi.log" ;;
  tests-paged)  # the paged attention kernels' GPU tests (K=expression: pytest -k, a subset)
    rc=0; timeout "${T:-560}" python3 -m pytest -rA -x -p no:cacheprovider ${K:+-k "$K"} \
      tests/kernels/test_triton_paged_attention.py > "$out/tests-paged.log" 2>&1 || rc=$?
    tail -n 40 "$out/tests-paged.log"; echo "pytest rc=$rc" | tee -a "$out/tests-paged.log" ;;
  split-probe-ragged)  # split targets by batch size over ragged contexts (the gather kernel's case)
    timeout 560 python3 bench/split_target_probe.py --ragged --contexts 384,1024 \
      --batches 1,2,4,8,16,24,32,48,64,96,128 --out "$out/split-target-ragged.json" \
      2>&1 | tee "$out/split-target-ragged.log" ;;
  split-ab)  # per-kernel split targets in the engine (set them from split-probe-ragged first)
    python3 bench/env_ab.py --out "$out/split-ab.json" --budget 540 \
      --variant NANOLANG_KV_SPLIT_TARGET=2 --variant NANOLANG_KV_SPLIT_TARGET=kernel -- \
      --model llama-3-8b --workloads sharegpt:256,lmsys:256,splitwise:256 --warmup-requests 32 \
      --attention-backend triton \
      2>&1 | tee "$out/split-ab.log" ;;
  cut-probe)  # the cut by length against the cut by context: gather over ragged, TMA over equal
    timeout 240 python3 bench/split_target_probe.py --ragged --kernels gather --cuts context,length \
      --targets 1,2 --contexts 384,1024 --batches 2,4,8,16,24,32,48,64 \
      --out "$out/cut-probe-gather-ragged.json" 2>&1 | tee "$out/cut-probe-gather-ragged.log"
    timeout 150 python3 bench/split_target_probe.py --kernels tma --cuts context,length \
      --targets 2 --contexts 384,1024 --batches 2,8,16,32,64 \
      --out "$out/cut-probe-tma-equal.json" 2>&1 | tee "$out/cut-probe-tma-equal.log" ;;
  cut-ab)  # the cut by length in the engine (Triton attention), two rounds
    python3 bench/env_ab.py --out "$out/cut-ab.json" --budget 330 \
      --variant NANOLANG_KV_SPLITS=context --variant NANOLANG_KV_SPLITS=length -- \
      --model llama-3-8b --workloads splitwise:256,sharegpt:256,lmsys:256 --warmup-requests 32 \
      --attention-backend triton 2>&1 | tee "$out/cut-ab.log" ;;
  argmax-ab)  # the Triton greedy argmax against torch's: a profile over 16 rows, then the A/B
    for k in torch triton; do
      NANOLANG_KERNELS=argmax=$k timeout 200 python3 -m runtime.bench --model llama-3-8b \
        --workloads 512/512:16 --warmup-requests 8 --attention-backend triton --profile-run --profile-skip 100 \
        --profile-window 64 --profile-top 40 --out "$out/argmax-profile-$k.json" \
        > "$out/argmax-profile-$k.log" 2>&1
    done
    python3 bench/env_ab.py --out "$out/argmax-ab.json" --budget 280 \
      --variant NANOLANG_KERNELS=argmax=torch --variant NANOLANG_KERNELS=argmax=triton -- \
      --model llama-3-8b --workloads sharegpt:256,lmsys:256,512/512:256 --warmup-requests 32 \
      --attention-backend triton \
      2>&1 | tee "$out/argmax-ab.log" ;;
  copies-ab)  # one copy of a decode step's row metadata against a copy per tensor
    python3 bench/env_ab.py --out "$out/copies-ab.json" --budget 540 \
      --variant NANOLANG_DECODE_COPIES=separate --variant NANOLANG_DECODE_COPIES=one -- \
      --model llama-3-8b --workloads sharegpt:256,lmsys:256,512/512:256 --warmup-requests 32 --attention-backend triton \
      2>&1 | tee "$out/copies-ab.log" ;;
  pdl-ab)  # programmatic dependent launch of the small Triton kernels, against plain launches
    python3 bench/env_ab.py --out "$out/pdl-ab.json" --budget 540 \
      --variant NANOLANG_PDL=0 --variant NANOLANG_PDL=1 -- \
      --model llama-3-8b --workloads sharegpt:256,lmsys:256,512/512:256 --warmup-requests 32 --attention-backend triton \
      2>&1 | tee "$out/pdl-ab.log" ;;
  fi-prefill)  # Triton's decode with FlashInfer's prefill, against Triton's attention
    timeout 570 python3 -m runtime.bench --model llama-3-8b --workloads splitwise:256,1024/512:256 \
      --warmup-requests 32 --attention-backend triton,flashinfer-prefill \
      --out "$out/fi-prefill.json" 2>&1 | tee "$out/fi-prefill.log" ;;
  attn-1000)  # the three attention backends at 1,000 requests, one engine each (no peers; W, T)
    timeout "${T:-590}" python3 -m runtime.bench --model llama-3-8b \
      --workloads "${W:-splitwise:1000,sharegpt:1000}" \
      --warmup-requests 32 --attention-backend triton,flashinfer-prefill,flashinfer \
      --out "$out/attn-1000.json" 2>&1 | tee "$out/attn-1000.log" ;;
  linear-profile)  # ShareGPT-like's 129-256-sequence steps under each linear
    timeout 570 python3 -m runtime.bench --model llama-3-8b --workloads sharegpt:256 \
      --warmup-requests 32 --attention-backend triton --linear torch,cublaslt --profile-run --profile-skip 150 \
      --profile-window 32 --out "$out/linear-profile.json" 2>&1 | tee "$out/linear-profile.log" ;;
  linear-ab-1000)  # cuBLASLt's table at the 288-1,024-row batches of 1,000 requests
    python3 bench/env_ab.py --out "$out/linear-ab-1000.json" --budget 560 \
      --variant NANOLANG_KERNELS=linear=torch --variant NANOLANG_KERNELS=linear=cublaslt -- \
      --model llama-3-8b --workloads sharegpt:1000,512/1024:1000 --warmup-requests 32 --attention-backend triton \
      2>&1 | tee "$out/linear-ab-1000.log" ;;
  peers-1000-a|peers-1000-b)  # the 1,000-request workloads beside vLLM and SGLang, in two calls
    w=sharegpt:1000,lmsys:1000,splitwise:1000
    [ "$name" = peers-1000-b ] && w=512/512:1000,1024/512:1000,512/1024:1000
    timeout 590 python3 -m runtime.bench --model llama-3-8b --workloads "$w" --warmup-requests 32 \
      --attention-backend triton "${peers[@]}" --peer-timeout 240 --out "$out/$name.json" 2>&1 \
      | tee "$out/$name.log" ;;
  peers-1000)  # one workload beside vLLM and SGLang: W=workload:requests, ATTN=backend (the registry's)
    timeout 590 python3 -m runtime.bench --model llama-3-8b --workloads "${W:?W=workload:requests}" \
      --warmup-requests 32 --attention-backend "${ATTN:-default}" "${peers[@]}" --peer-timeout 240 \
      --out "$out/peers-1000.json" 2>&1 | tee "$out/peers-1000.log" ;;
  tune-mixed)  # issue 19: search Splitwise-like's mixed iterations (~450 decodes beside ~5,700
    # prefill tokens at ~1,200-token contexts), then nanoflow against sequential on it
    timeout 240 python3 -m runtime.tune --model llama-3-8b \
      --tokens 16,32,64,128,256,512,1024,2048,4096,6144,8192,8704 \
      --attention-tokens 64,256,512,1024,2048,4096,8192 --contexts 1024,2048 \
      --interference-tokens 256,1024,4096 --decode-points 256,512 --prefill-points 0,2048,4096,8192 \
      --context-points 1024,2048 --max-tokens 8704 --explore 0.1 --jobs 8 \
      --out "$out/tune-mixed" 2>&1 | tee "$out/tune-mixed.log"
    timeout 330 python3 -m runtime.bench --model llama-3-8b --workloads splitwise:1000 \
      --warmup-requests 32 --mode sequential,nanoflow --plan "$out/tune-mixed/planset.json" \
      --out "$out/nanoflow-splitwise.json" 2>&1 | tee "$out/nanoflow-splitwise.log" ;;
  carve-probe)  # issue 19: attention confined to 16-48 SMs beside the GEMMs aimed at the rest
    timeout 560 python3 bench/carve_probe.py --out "$out/carve-probe.json" 2>&1 \
      | tee "$out/carve-probe.log" ;;
  tune-carve)  # issue 19: the carve layouts (attention's grid sized to N SMs, the GEMMs aimed at
    # the rest: cuBLASLt's SM count target) over Splitwise-like's mixed iterations and
    # ShareGPT-like's large decode steps, then nanoflow against sequential on both
    timeout 330 python3 -m runtime.tune --model llama-3-8b \
      --tokens 16,32,64,128,256,512,1024,2048,4096,6144,8192,8704 \
      --attention-tokens 64,256,512,1024,2048,4096,8192 --contexts 512,1024,2048 \
      --attention-sms 16,32,48 --carve-sms 32,48,64 --interference-tokens 256,1024,4096 \
      --decode-points 256,512,1024 --prefill-points 0,2048,4096,8192 --context-points 512,1024,2048 \
      --max-tokens 8704 --explore 0.1 --jobs 8 --out "$out/tune-carve" 2>&1 | tee "$out/tune-carve.log"
    timeout 260 python3 -m runtime.bench --model llama-3-8b --workloads splitwise:1000,sharegpt:1000 \
      --warmup-requests 32 --mode sequential,nanoflow --plan "$out/tune-carve/planset.json" \
      --out "$out/carve-bench.json" 2>&1 | tee "$out/carve-bench.log" ;;
  fi-partition)  # issue 19: FlashInfer's decode against the Triton kernels on SM partitions
    timeout 570 python3 bench/decode_attention_sms.py --kernels gather-quick,tma,flashinfer \
      --sms 132,64,48 --out "$out/fi-partition.json" 2>&1 | tee "$out/fi-partition.log" ;;
  tp-tests)  # two GPUs
    timeout 560 python3 -m pytest -q -p no:cacheprovider tests/runtime/distributed/test_gpu_tp_guard.py \
      2>&1 | tee "$out/tp-tests.log" ;;
  tp-table)  # two GPUs: cuBLASLt's algorithms at a 70B TP=2 rank's shapes (merge into the table after)
    timeout 570 python3 bench/cublaslt_algos.py --models llama-3-70b-tp2 --out "$out/tp-table.json" \
      --write-table "$out/cublaslt_algos-70b-tp2.json" 2>&1 | tee "$out/tp-table.log" ;;
  tp-pair)  # two GPUs: issue 20's 70B pair with the plan guard, fp8 KV at 512 sequences
    ALLREDUCE=symm_mem WORKLOADS=512/1024 REQUESTS_70B=512 MAX_SEQS_70B=512 T_70B=590 \
      BENCH_EXTRA="--kv-cache-dtype fp8" bash bench/tp_run.sh pair 2>&1 | tee "$out/tp-pair.log" ;;
esac
