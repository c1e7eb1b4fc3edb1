#!/usr/bin/env bash
# Re-plans the six one-GPU fidelity plans with the bundled profile (README.md's command), all six
# at once; needs the strata binary as $1 (default /tmp/strata-build/strata). Run from the repo root.
set -uo pipefail
strata=${1:-/tmp/strata-build/strata}
dir=bench/gpu_fidelity
pids=()
for mb in gpt-350m-b8:1 gpt-350m-b8:2 gpt-350m-b16:2 gpt-350m-b16:4 gpt-1.3b-b4:1 gpt-1.3b-b4:2; do
  m=${mb%:*} b=${mb#*:}
  $strata plan --model $dir/$m.yaml --cluster configs/clusters/h200-1gpu.yaml --profile profiles/h200-1gpu.h5 \
    --layers 2 --time-limit 5 --threads 1 --micro-batches $b --out $dir/plan-$m-B$b.yaml > /tmp/replan-$m-B$b.log 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait $p || rc=1; done
[ $rc = 0 ] || { tail -5 /tmp/replan-*.log; exit 1; }
echo "replanned: $(ls $dir/plan-*.yaml | wc -l) plans"
