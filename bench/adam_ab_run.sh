#!/usr/bin/env bash
# Session 18's A/B of the batched AdamW on one GPU, in one command: build and the kernel tests
# (bench/gpt_gpu_run.sh build,test), bench/memory_kernels_bench.cu, then gpt_gpu_bench on
# GPT-1.3B with STRATA_CUDA_MULTI_ADAM=0 and =1 alternating (ROUNDS pairs). Logs go to $OUT.
#   bench/adam_ab_run.sh SRC_DIR [STAGES: any of build,test,kernels,ab] [ROUNDS]
set -uo pipefail
src=${1:?source dir}
stages=${2:-build,test,kernels,ab}
rounds=${3:-1}
out=${OUT:-$PWD/out}
build=/tmp/strata-build
has() { [[ ",$stages," == *",$1,"* ]]; }
gpu_stages=$(echo "$stages" | tr ',' '\n' | grep -E '^(build|test)$' | paste -sd,)
[ -n "$gpu_stages" ] && { bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-1.3b.yaml 8 "$gpu_stages" || exit 1; }
if has kernels; then
  nvcc -O3 -std=c++20 -arch=sm_90 -I"$src/src" -I"$src/include" -I"$src/src/runtime/cuda" \
    "$src/bench/memory_kernels_bench.cu" "$src"/src/runtime/cuda/{elementwise,nn,layout}.cu $build/libstrata_core.a \
    -o /tmp/mkbench > "$out/mkbench-build.log" 2>&1 || { tail -20 "$out/mkbench-build.log"; exit 1; }
  /tmp/mkbench 2>&1 | tee "$out/mkbench.log" | head -8
fi
if has ab; then
  export LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  for r in $(seq "$rounds"); do
    for multi in 0 1; do
      log="$out/step-multi$multi-r$r.log"
      STRATA_CUDA_MULTI_ADAM=$multi mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH \
        -x STRATA_CUDA_MULTI_ADAM $build/gpt_gpu_bench --model "$src/configs/models/gpt-1.3b.yaml" --micro-batch 8 \
        --steps 7 --warmup 2 > "$log" 2>&1
      echo "multi=$multi round $r rc=$?"
      grep -E "^step|RESULT|AdamUpdate|Reshape|Slice|Concat" "$log"
    done
  done
  grep -E "slowest" -A15 "$out/step-multi1-r1.log"
fi
