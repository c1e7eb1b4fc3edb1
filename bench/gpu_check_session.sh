#!/usr/bin/env bash
# Device check after executor changes: build strata, the cuda kernel tests and spmd_check (sm_90),
# the executor's cuda tests, two cpu-backend spmd ctests (executor vs interpreter on 8 ranks), then
# the fidelity of every bench/gpu_fidelity plan. Logs: $OUT/logs.tgz.
#   bench/gpu_check_session.sh SRC_DIR
set -uo pipefail
src=${1:?source dir}
final=${OUT:-$PWD/out}
export OUT=/tmp/check-logs NCCL_NVLS_ENABLE=0
mkdir -p "$OUT" "$final"
TARGETS="strata test_runtime_cuda spmd_check" bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-tiny.yaml 8 build || exit 1
export LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH /tmp/strata-build/tests/runtime_cuda/test_runtime_cuda \
  --gtest_filter='CudaExecutor*' > "$OUT/executor_test.log" 2>&1
echo "executor tests rc=$?"; grep -E "^executor step|per-op cost|PASSED|FAILED" "$OUT/executor_test.log"
(cd /tmp/strata-build && timeout 300 ctest -R 'runtime_spmd_gpt-tiny_seed7|runtime_memory_gpt-tiny' --output-on-failure > "$OUT/ctest.log" 2>&1)
echo "spmd ctests rc=$?"; grep -E "tests passed|Passed|Failed" "$OUT/ctest.log"
bash "$src/bench/gpu_fidelity.sh" "$src" 8
tar -C "$OUT" -czf "$final/logs.tgz" . && rm -rf "$OUT"
