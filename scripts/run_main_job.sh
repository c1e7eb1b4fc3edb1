#!/usr/bin/env bash
# The README's main job on a machine with no GPU: inspect the GPT-1.3B graph, plan it on the
# bundled 8-GPU cluster (pipeline stages by the DP, sharding by the intra-op ILP, both on the
# cluster's cost model), then simulate the plan it wrote. The planner is asked for 2 layers, B = 128
# (micro-batches of 8) and a 2 s limit per ILP so that the job takes one to two minutes on a 2-core
# machine (the full search, `strata plan` without these flags, takes far longer there); the stage
# cache in out/stage-cache makes a second run take well under a second.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
strata="$build/strata"
mkdir -p out
echo "== strata inspect --model configs/models/gpt-1.3b.yaml"
"$strata" inspect --model configs/models/gpt-1.3b.yaml
echo
echo "== strata plan --model configs/models/gpt-1.3b.yaml --cluster configs/clusters/aws-p3-1node.yaml --out out/plan.yaml"
"$strata" plan --model configs/models/gpt-1.3b.yaml --cluster configs/clusters/aws-p3-1node.yaml \
  --layers 2 --micro-batches 128 --time-limit 2 --cache out/stage-cache --out out/plan.yaml
echo
echo "== strata simulate --plan out/plan.yaml --trace out/trace.json"
"$strata" simulate --plan out/plan.yaml --cluster configs/clusters/aws-p3-1node.yaml --trace out/trace.json
