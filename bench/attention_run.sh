#!/usr/bin/env bash
# The attention micro-bench on a one-GPU machine: builds libstrata_core, then bench/attention_bench.cu
# once per kernel source given as NAME=PATH (e.g. base=old/attention.cu new=src/runtime/cuda/attention.cu),
# runs each (same call, so comparable) and PyTorch's SDPA at the same shapes. Logs go to $OUT.
#   [STAGES=build,test] [TARGETS=test_runtime_cuda] bench/attention_run.sh SRC_DIR NAME=PATH...
# (STAGES and TARGETS as bench/gpt_gpu_run.sh takes them; the build of libstrata_core always.)
set -uo pipefail
src=${1:?source dir}
shift
out=${OUT:-$PWD/out}
mkdir -p "$out"
TARGETS="strata_core ${TARGETS:-}" OUT=$out bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-1.3b.yaml 8 "${STAGES:-build}" || [ -f /tmp/strata-build/libstrata_core.a ] || exit 1
for spec in "$@"; do
  name=${spec%%=*}
  nvcc -O3 -std=c++20 -arch=sm_90 -I"$src/src" -I"$src/include" -I"$src/src/runtime/cuda" "$src/bench/attention_bench.cu" \
    "${spec#*=}" /tmp/strata-build/libstrata_core.a -o "/tmp/attbench-$name" > "$out/nvcc-$name.log" 2>&1 &
done
wait
for spec in "$@"; do
  name=${spec%%=*}
  echo "== $name"; "/tmp/attbench-$name" || tail -5 "$out/nvcc-$name.log"
done
PYTHONUNBUFFERED=1 python3 "$src/bench/sdpa_bench.py"
