#!/usr/bin/env bash
# The throughput benchmark of issue 8 on one machine of G GPUs, side by side in one run: the plan
# Strata finds for a GPT (global batch = MICRO_BATCH x G, bf16) trained by `strata train --backend
# cuda` (NCCL inside the mesh) against the PyTorch reference (bench/pytorch_gpt.py: DDP over NCCL
# under torchrun when G > 1, eager and torch.compile), each as per-GPU model TFLOP/s and MFU, and
# the step `strata simulate` predicted for that plan against the measured one.
#   bench/gpt_gpu_scaling.sh SRC_DIR GPUS [MODEL] [MICRO_BATCH] [STEPS]
# MODEL: a config of configs/models (default gpt-1.3b.yaml); MICRO_BATCH: sequences per GPU
# (default 8). With G > 1 the cluster is profiled first (`strata profile --backend nccl`, the
# collectives the planner prices; PROFILE=none plans on the cluster file's datasheet rates
# instead); with G = 1 the bundled profiles/h200-1gpu.h5 is used. The
# cluster file is configs/clusters/h200-1node.yaml with G GPUs. PLAN_FLAGS: extra `strata plan` flags
# (default --time-limit 10). Logs and the plan go to $OUT.
set -uo pipefail
src=${1:?source dir}
gpus=${2:?number of GPUs}
model=${3:-gpt-1.3b.yaml}
mb=${4:-8}
steps=${5:-8}
out=${OUT:-$PWD/out}
mkdir -p "$out"
source "$src/bench/gpu_strata_env.sh"
mpi="mpirun --allow-run-as-root -np $gpus -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH"
name=$(basename "$model" .yaml)

# The cluster and the model at this machine's size, in bf16 (the cuda backend's activations).
cluster=$out/h200-${gpus}gpu.yaml
sed -e "s/^name: .*/name: h200-${gpus}gpu/" -e "s/^gpus_per_node: .*/gpus_per_node: $gpus/" \
  "$src/configs/clusters/h200-1node.yaml" > "$cluster"
config=$out/$name-b$((mb * gpus)).yaml
sed -e "s/^\( *\)global_batch: .*/\1global_batch: $((mb * gpus))/" -e "s/^\( *\)dtype: .*/\1dtype: bf16/" \
  "$src/configs/models/$model" > "$config"
read -r h l n s v < <(python3 - "$config" <<'PY'
import sys, yaml
m = yaml.safe_load(open(sys.argv[1]))["model"]
print(m["hidden"], m["layers"], m["heads"], m.get("seq_len", 1024), m.get("vocab", 51200))
PY
)

profile=$src/profiles/h200-1gpu.h5
profile_flag=(--profile "$profile")
if [ "$gpus" -gt 1 ] && [ "${PROFILE:-measure}" = none ]; then
  profile_flag=()  # the cluster file's datasheet rates (alpha-beta collectives, roofline compute)
elif [ "$gpus" -gt 1 ]; then
  profile=$out/h200-${gpus}gpu.h5
  $mpi $strata profile --cluster "$cluster" --backend nccl --dtypes bf16,f32 --max-bytes 268435456 --out "$profile" \
    > "$out/profile.log" 2>&1 || { echo "profile failed"; tail -5 "$out/profile.log"; exit 1; }
  echo "profile: $(tail -1 "$out/profile.log")"
  profile_flag=(--profile "$profile")
fi
plan=$out/plan-$name-${gpus}gpu.yaml
$strata plan --model "$config" --cluster "$cluster" "${profile_flag[@]}" ${PLAN_FLAGS:---time-limit 10} --out "$plan" > "$out/plan.log" 2>&1 ||
  { echo "plan failed"; tail -5 "$out/plan.log"; exit 1; }
grep -iE "stage|mesh|micro|final" "$out/plan.log" | head -12
predicted=$($strata simulate --plan "$plan" --json | python3 -c 'import json,sys; print(1e3 * json.load(sys.stdin)["step_seconds"])')

$mpi $strata train --plan "$plan" --backend cuda --steps "$steps" --data "$src/data/tiny_corpus.txt" \
  > "$out/train.log" 2>&1 || { echo "strata train failed"; tail -8 "$out/train.log"; exit 1; }
measured=$(grep -E '^ +[0-9]+ +[0-9.]+ +[0-9.]+ ' "$out/train.log" | awk '$1 >= 3 {print 1e3 * $3}' | sort -n |
  awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')

torch="python3"
[ "$gpus" -gt 1 ] && torch="torchrun --standalone --nproc_per_node $gpus"
for mode in eager compile; do
  flag=""; [ $mode = compile ] && flag=--compile
  $torch "$src/bench/pytorch_gpt.py" --hidden "$h" --layers "$l" --heads "$n" --seq "$s" --vocab "$v" \
    --micro-batch "$mb" $flag > "$out/pytorch-$mode.log" 2>&1 || { echo "pytorch $mode failed"; tail -5 "$out/pytorch-$mode.log"; }
done

# Per-GPU model FLOPs of one step (6N + 12LHS per token, N from PyTorch's parameter count).
python3 - "$out" "$name" "$gpus" "$mb" "$s" "$l" "$h" "$measured" "$predicted" <<'PY'
import re, sys
out, name, gpus, mb, s, l, h, measured, predicted = sys.argv[1:]
gpus, mb, s, l, h = int(gpus), int(mb), int(s), int(l), int(h)
measured, predicted = float(measured), float(predicted)
rows, params = [], None
for mode in ("eager", "compile"):
    try:
        line = next(x for x in open(f"{out}/pytorch-{mode}.log") if x.startswith("RESULT"))
    except (OSError, StopIteration):
        continue
    params = float(re.search(r"params=([0-9.]+)B", line).group(1)) * 1e9
    rows.append((f"PyTorch {mode}" + (" DDP" if gpus > 1 else ""), float(re.search(r"step_ms=([0-9.]+)", line).group(1))))
if params is None:
    sys.exit("no PyTorch RESULT line: no parameter count for the FLOP formula")
ntok = mb * s
flops = 6.0 * params * ntok + 12.0 * l * h * s * ntok
print(f"{name}, {gpus} x H200, {mb} sequences of {s} per GPU per step")
print(f"| program | step ms | model TFLOP/s per GPU | MFU | Strata's speed relative to it |")
print(f"|---|---|---|---|---|")
for label, ms in [("Strata, planner's plan (strata train)", measured)] + rows:
    print(f"| {label} | {ms:.1f} | {flops / ms / 1e9:.1f} | {100 * flops / ms / 1e9 / 989:.1f}% | {ms / measured:.2f}x |")
print(f"simulator: predicted {predicted:.1f} ms, measured {measured:.1f} ms, error {100 * (predicted - measured) / measured:+.1f}%")
PY
