#!/usr/bin/env bash
# The device side of the fused cost model (session 19), in one call: build strata, then STAGES
# (comma-separated) of: profile (re-profile the GPU into profiles/h200-1gpu.h5: the per-op cost,
# memory-bound ops, the fused attention and GPT-shaped GEMMs through the backend), plan (re-plan
# the six fidelity plans with replan.sh and the throughput plans of GPT-1.3B and GPT-2.6B at global
# batch 8, as gpt_gpu_scaling.sh makes them; print what `strata simulate` predicts), fidelity
# (bench/gpu_fidelity.sh on the six), throughput (`strata train` of the two throughput plans, median
# of steps 3-8), bench (gpt_gpu_bench's per-op table of gpt-1.3b-b4 at micro-batches 4 and 2).
# Files to $OUT.
#   bench/gpu_fidelity/calibrate.sh SRC_DIR STAGES
set -uo pipefail
src=${1:?source dir}
stages=${2:?stages}
out=${OUT:-$PWD/out}
plans=/tmp/calibrate-plans  # the plans and their logs, packed into $OUT/plans.tgz
mkdir -p "$out" $plans
has() { [[ ",$stages," == *",$1,"* ]]; }
TARGETS="strata gpt_gpu_bench" bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-tiny.yaml 8 build || exit 1
export NCCL_NVLS_ENABLE=0 LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
strata=/tmp/strata-build/strata
mpi="mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH"
cd "$src"
median_step() {  # median of steps 3.. of a `strata train` log, in ms
  grep -E '^ +[0-9]+ +[0-9.]+ +[0-9.]+ ' "$1" | awk '$1 >= 3 {print 1e3 * $3}' | sort -n |
    awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
if has profile; then
  timeout 200 $mpi $strata profile --cluster configs/clusters/h200-1gpu.yaml --backend nccl --dtypes bf16,f32 \
    --max-bytes 268435456 --out "$out/h200-1gpu.h5" > "$out/profile.log" 2>&1
  echo "profile rc=$?"; grep -E "per-op cost|^ +(64|80) " "$out/profile.log"; tail -2 "$out/profile.log"
  cp "$out/h200-1gpu.h5" profiles/h200-1gpu.h5 || exit 1
fi
if has plan; then
  bash bench/gpu_fidelity/replan.sh $strata
  cp bench/gpu_fidelity/plan-*.yaml "$plans/"
  for m in gpt-1.3b gpt-2.6b; do
    sed -e "s/^\( *\)global_batch: .*/\1global_batch: 8/" -e "s/^\( *\)dtype: .*/\1dtype: bf16/" configs/models/$m.yaml \
      > "$plans/$m-b8.yaml"
    $strata plan --model "$plans/$m-b8.yaml" --cluster configs/clusters/h200-1gpu.yaml --profile profiles/h200-1gpu.h5 \
      --time-limit 10 --out "$plans/plan-$m-b8.yaml" > "$plans/plan-$m-b8.log" 2>&1 || tail -3 "$plans/plan-$m-b8.log"
  done
  for p in bench/gpu_fidelity/plan-*.yaml "$plans"/plan-gpt-*-b8.yaml; do
    printf "%-24s predicted %s ms, %s\n" "$(basename $p .yaml)" \
      "$($strata simulate --plan $p --json | python3 -c 'import json,sys; print(round(1e3 * json.load(sys.stdin)["step_seconds"], 2))')" \
      "$(grep -m1 num_micro_batches $p)"
  done
  tar -C $plans -czf "$out/plans.tgz" .
fi
if has fidelity; then
  timeout 150 bash bench/gpu_fidelity.sh "$src" 8
fi
if has throughput; then
  for m in gpt-1.3b gpt-2.6b; do
    timeout 60 $mpi $strata train --plan "$plans/plan-$m-b8.yaml" --backend cuda --steps 8 --data data/tiny_corpus.txt \
      > "$plans/train-$m-b8.log" 2>&1
    echo "train $m-b8 rc=$? measured $(median_step "$plans/train-$m-b8.log") ms"
  done
fi
if has bench; then
  for mb in 4 2; do
    $mpi /tmp/strata-build/gpt_gpu_bench --model bench/gpu_fidelity/gpt-1.3b-b4.yaml --micro-batch $mb --steps 5 --warmup 2 \
      > "$out/bench-mb$mb.log" 2>&1
    echo "bench mb$mb rc=$?"; grep -E "RESULT|per-op" -A16 "$out/bench-mb$mb.log" | head -20
  done
fi
tar -C $plans -czf "$out/plans.tgz" .
