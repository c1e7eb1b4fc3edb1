#!/usr/bin/env bash
# The GPU session of the cuda backend, in one command on a one-GPU machine: build (sm_90), run the
# kernel tests, then the GPT throughput bench of Strata's executor path and the PyTorch reference
# side by side. Logs go to $OUT (or ./out).
#   bench/gpt_gpu_run.sh SRC_DIR [MODEL] [MICRO_BATCH] [STAGES]
# STAGES: any of build,test,tiny,plan,strata,strata0,plan13,eager,compile,profile (comma-separated).
# strata: gpt_gpu_bench on the graph after fuse_for_cuda; strata0: the same without it (--fuse 0);
# strataP: strata with STRATA_CUDA_POINTER_BATCHES=1.
# plan: the planner's plan of gpt-tiny on h200-1gpu trained 3 steps by the executor on cuda and on
# cpu; plan13: the planner's plan of MODEL (global batch MICRO_BATCH) on the cuda executor.
# TARGETS (environment) overrides the build targets.
# lp_solve comes from .device-carry/*.deb unpacked under /tmp/lp when the system has none.
set -uo pipefail
src=${1:?source dir}
model=${2:-configs/models/gpt-1.3b.yaml}
mb=${3:-8}
stages=${4:-build,test,tiny,plan,strata,eager}
out=${OUT:-$PWD/out}
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
has() { [[ ",$stages," == *",$1,"* ]]; }
build=/tmp/strata-build
lp=/tmp/lp
if [ ! -f /usr/include/lpsolve/lp_lib.h ] && [ ! -d $lp ]; then
  for f in "$src"/.device-carry/*.deb; do dpkg -x "$f" $lp; done
fi
export LD_LIBRARY_PATH=$lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
if has build; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
  cmake -S "$src" -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DLPSOLVE_INCLUDE_DIR=$lp/usr/include/lpsolve -DLPSOLVE_LIBRARY=$lp/usr/lib/liblpsolve55_pic.a \
    -DCOLAMD_LIBRARY=$lp/usr/lib/x86_64-linux-gnu/libcolamd.so.2 > "$out/build.log" 2>&1 &&
  cmake --build $build -j16 --target ${TARGETS:-test_runtime_cuda gpt_gpu_bench gpt_gpu_plan_check strata} >> "$out/build.log" 2>&1 ||
    { tail -40 "$out/build.log"; exit 1; }
  echo "build ok"
fi
mpi="mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH"
if has test; then
  $mpi $build/tests/runtime_cuda/test_runtime_cuda --gtest_brief=1 > "$out/test.log" 2>&1
  echo "kernel tests rc=$?"; grep -E "gpt-tiny step|FAILED|PASSED|Failure|error" "$out/test.log" | head -40
fi
if has tiny; then
  $mpi $build/gpt_gpu_bench --model "$src/configs/models/gpt-tiny.yaml" --micro-batch 8 --steps 3 --warmup 1 \
    > "$out/tiny.log" 2>&1; echo "tiny rc=$?"; grep RESULT "$out/tiny.log"
fi
if has plan; then
  $mpi $build/gpt_gpu_plan_check --model "$src/configs/models/gpt-tiny.yaml" \
    --cluster "$src/configs/clusters/h200-1gpu.yaml" --backends cuda,cpu --steps 3 --plan-out "$out/plan-tiny.yaml" \
    > "$out/plan.log" 2>&1; echo "plan rc=$?"; tail -12 "$out/plan.log"
fi
read -r h l n s v < <(python3 - "$src/$model" <<'PY'
import sys, yaml
m = yaml.safe_load(open(sys.argv[1]))["model"]
print(m["hidden"], m["layers"], m["heads"], m.get("seq_len", 1024), m.get("vocab", 51200))
PY
)
if has strata0; then
  $mpi $build/gpt_gpu_bench --model "$src/$model" --micro-batch "$mb" --steps 5 --warmup 2 --fuse 0 > "$out/strata0.log" 2>&1
  echo "strata0 (unfused) rc=$?"; grep -E "RESULT|per-op" -A12 "$out/strata0.log" | head -16
fi
if has strataP; then
  $mpi -x STRATA_CUDA_POINTER_BATCHES=1 $build/gpt_gpu_bench --model "$src/$model" --micro-batch "$mb" --steps 5 --warmup 2 \
    > "$out/strataP.log" 2>&1
  echo "strataP (pointer-array batches) rc=$?"; grep -E "RESULT|per-op" -A6 "$out/strataP.log" | head -10
fi
if has strata; then
  $mpi $build/gpt_gpu_bench --model "$src/$model" --micro-batch "$mb" --steps 5 --warmup 2 > "$out/strata.log" 2>&1
  echo "strata rc=$?"; grep -E "fusion|RESULT|per-op|slowest" -A16 "$out/strata.log" | head -44
fi
for mode in eager compile; do
  has $mode || continue
  flag=""; [ $mode = compile ] && flag=--compile
  python3 "$src/bench/pytorch_gpt.py" --hidden "$h" --layers "$l" --heads "$n" --seq "$s" --vocab "$v" \
    --micro-batch "$mb" $flag > "$out/pytorch-$mode.log" 2>&1
  echo "pytorch $mode rc=$?"; grep RESULT "$out/pytorch-$mode.log" || tail -5 "$out/pytorch-$mode.log"
done
if has plan13; then
  timeout 300 $mpi $build/gpt_gpu_plan_check --model "$src/$model" --cluster "$src/configs/clusters/h200-1gpu.yaml" \
    --backends cuda --steps 4 --global-batch "${PLAN13_BATCH:-$mb}" --plan-out "$out/plan-13.yaml" > "$out/plan13.log" 2>&1
  echo "plan13 rc=$?"; tail -8 "$out/plan13.log"
fi
if has profile; then
  timeout 150 $mpi $build/strata profile --cluster "$src/configs/clusters/h200-1gpu.yaml" --backend nccl --dtypes bf16,f32 --max-bytes 268435456 \
    --out "$out/h200-1gpu.h5" > "$out/profile.log" 2>&1
  echo "profile rc=$?"; tail -15 "$out/profile.log"
fi
