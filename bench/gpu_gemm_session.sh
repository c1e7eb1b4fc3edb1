#!/usr/bin/env bash
# The GEMM tuning session on one GPU, after bench/gpt_gpu_run.sh's build stage (/tmp/strata-build):
# the GemmTuner tests, GPT-1.3B's GEMM shapes with the tuner off and on next to PyTorch
# (bench/gemm_shapes_torch.py), then the GPT-1.3B step with STRATA_CUDA_GEMM_TUNE=0 and 1.
#   bench/gpu_gemm_session.sh SRC_DIR [STAGES]   (STAGES: any of gemm,torch,tests,step; default all)
set -uo pipefail
src=${1:?source dir}
stages=${2:-gemm,torch,tests,step}
out=${OUT:-$PWD/out}
mkdir -p "$out"
has() { [[ ",$stages," == *",$1,"* ]]; }
build=/tmp/strata-build
export LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
mpi="mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH"
if has gemm; then
  $mpi $build/tests/runtime_cuda/test_runtime_cuda --gtest_also_run_disabled_tests \
    --gtest_filter='CudaGemm.*:CudaEpilogue.*' > "$out/gemm.log" 2>&1
  echo "gemm tests rc=$?"; grep -E "^\||FAILED|PASSED|Failure|epilogue " "$out/gemm.log"
fi
if has torch; then
  python3 "$src/bench/gemm_shapes_torch.py" > "$out/torch.log" 2>&1; echo "torch rc=$?"; cat "$out/torch.log"
fi
if has tests; then
  $mpi $build/tests/runtime_cuda/test_runtime_cuda --gtest_brief=1 > "$out/test.log" 2>&1
  echo "kernel tests rc=$?"; grep -E "FAILED|PASSED|Failure" "$out/test.log" | head -20
fi
if has step; then
  for tune in 0 1; do
    $mpi -x STRATA_CUDA_GEMM_TUNE=$tune $build/gpt_gpu_bench --model "$src/configs/models/gpt-1.3b.yaml" \
      --micro-batch 8 --steps 5 --warmup 2 > "$out/step-tune$tune.log" 2>&1
    echo "step STRATA_CUDA_GEMM_TUNE=$tune rc=$?"
    grep -E "^step|RESULT|total| Dot| Add| Gelu| Transpose" "$out/step-tune$tune.log" | head -14
  done
fi
