#!/usr/bin/env bash
# Session 19's A/B of the strided q/k/v (STRATA_CUDA_STRIDED_QKV) and the residual GEMMs
# (STRATA_CUDA_RESIDUAL_GEMM) on one GPU, in one command: build and the kernel tests
# (bench/gpt_gpu_run.sh build,test), then gpt_gpu_bench on MODEL with the two switches at 00, 10
# and 11 in turn, ROUNDS rounds. Logs go to $OUT (the A/B runs all in ab.log).
#   bench/qkv_ab_run.sh SRC_DIR [STAGES: any of build,test,ab] [ROUNDS] [MODEL]
set -uo pipefail
src=${1:?source dir}
stages=${2:-build,test,ab}
rounds=${3:-1}
model=${4:-configs/models/gpt-1.3b.yaml}
out=${OUT:-$PWD/out}
build=/tmp/strata-build
has() { [[ ",$stages," == *",$1,"* ]]; }
gpu_stages=$(echo "$stages" | tr ',' '\n' | grep -E '^(build|test)$' | paste -sd,)
[ -n "$gpu_stages" ] && { bash "$src/bench/gpt_gpu_run.sh" "$src" "$model" 8 "$gpu_stages" || exit 1; }
if has ab; then
  export LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  for r in $(seq "$rounds"); do
    for ab in 00 10 11; do
      export STRATA_CUDA_STRIDED_QKV=${ab:0:1} STRATA_CUDA_RESIDUAL_GEMM=${ab:1:1}
      echo "=== strided=${ab:0:1} residual=${ab:1:1} round $r" >> "$out/ab.log"
      mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH -x STRATA_CUDA_STRIDED_QKV \
        -x STRATA_CUDA_RESIDUAL_GEMM $build/gpt_gpu_bench --model "$src/$model" --micro-batch 8 --steps 7 --warmup 2 \
        >> "$out/ab.log" 2>&1
      echo "strided=${ab:0:1} residual=${ab:1:1} round $r rc=$?"
    done
  done
  grep -E "^===|RESULT|^step 1:|^  (Slice|Concat|Add) " "$out/ab.log"
fi
