#!/usr/bin/env bash
# One device call for issue 8's runtime costs: build strata and the kernel tests (sm_90), run the
# tests, re-profile the GPU (`strata profile`, as profiles/h200-1gpu.h5 was made: now with the
# executor's per-op cost and the memory-bound ops), then the fidelity of PLANS with the executor's
# fused graph and, with STRATA_CUDA_FUSE=0, the graph as built. Logs: $OUT/logs.tgz; profile:
# $OUT/h200-1gpu.h5.
#   bench/gpu_costs_session.sh SRC_DIR STAGES [PLAN.yaml ...]   STAGES: any of test,profile,fused,unfused
set -uo pipefail
src=${1:?source dir}
stages=${2:?stages}
shift 2
final=${OUT:-$PWD/out}
export OUT=/tmp/costs-logs
mkdir -p "$OUT" "$final"
export NCCL_NVLS_ENABLE=0
has() { [[ ",$stages," == *",$1,"* ]]; }
TARGETS="strata test_runtime_cuda" bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-tiny.yaml 8 build || exit 1
if has test; then
  TARGETS="strata test_runtime_cuda" bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-tiny.yaml 8 test
  grep -E "^executor step|per-op cost|^  (add|gelu|softmax|layer_norm) " "$OUT/test.log"
fi
if has profile; then
  export LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  timeout 240 mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH /tmp/strata-build/strata profile \
    --cluster "$src/configs/clusters/h200-1gpu.yaml" --backend nccl --dtypes bf16,f32 --max-bytes 268435456 \
    --out "$final/h200-1gpu.h5" > "$OUT/profile.log" 2>&1
  echo "profile rc=$?"; tail -16 "$OUT/profile.log"
fi
if has fused; then
  echo "== fused (the executor's default)"; bash "$src/bench/gpu_fidelity.sh" "$src" 8 "$@"
fi
if has unfused; then
  echo "== unfused (STRATA_CUDA_FUSE=0)"; STRATA_CUDA_FUSE=0 bash "$src/bench/gpu_fidelity.sh" "$src" 8 "$@"
fi
tar -C "$OUT" -czf "$final/logs.tgz" . && rm -rf "$OUT"
