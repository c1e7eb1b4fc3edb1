#!/usr/bin/env bash
# The README's main job on a machine with no GPU: inspect the GPT-1.3B graph, then simulate the
# bundled 2-stage plan for it on the bundled 8-GPU cluster.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
strata="$build/strata"
echo "== strata inspect --model configs/models/gpt-1.3b.yaml"
"$strata" inspect --model configs/models/gpt-1.3b.yaml
if "$strata" --help | grep -q '^  simulate'; then
  mkdir -p out
  echo
  echo "== strata simulate --plan configs/plans/example-gpt-2stage.yaml --trace out/trace.json"
  "$strata" simulate --plan configs/plans/example-gpt-2stage.yaml --trace out/trace.json
fi
