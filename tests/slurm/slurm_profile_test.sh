#!/usr/bin/env bash
# Under a real one-node Slurm: sbatch scripts/slurm/profile_cluster.sh with the cpu backend on 4
# ranks, wait for the job, check its exit state, its log and the profile it wrote; then a job
# whose task count does not match the cluster must fail with the one-line error before profiling.
set -euo pipefail
source_dir=${1:?usage: slurm_profile_test.sh SOURCE_DIR STRATA_BINARY CHECK_PROFILE_BINARY}
strata=$(realpath "${2:?}")
check_profile=$(realpath "${3:?}")
work=$(mktemp -d /tmp/strata-slurm-test.XXXXXX)
slurm_dir="$work/slurm"
cleanup() { "$source_dir/scripts/slurm/local_slurm.sh" stop "$slurm_dir"; rm -rf "$work"; }
trap cleanup EXIT

# Ports of our own, so that two test runs on one machine do not collide.
export STRATA_SLURMCTLD_PORT=$((20000 + (RANDOM % 10000) * 2))
export STRATA_SLURMD_PORT=$((STRATA_SLURMCTLD_PORT + 1))
eval "$("$source_dir/scripts/slurm/local_slurm.sh" start "$slurm_dir")"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export STRATA="$strata" BACKEND=cpu DTYPES=f32 PROFILE_DIR="$work/profiles" LAUNCHER=mpirun
cd "$source_dir"

# 1. A good job: 4 tasks for the 4-device cpu cluster.
sbatch --wait --gpus-per-node=0 --ntasks-per-node=4 --cpus-per-task=1 --output="$work/good-%j.out" \
  scripts/slurm/profile_cluster.sh configs/clusters/cpu-4.yaml --max-bytes 65536 --iterations 2 \
  || { echo "FAIL: the profile job did not succeed"; cat "$work"/good-*.out; exit 1; }
log=$(cat "$work"/good-*.out)
grep -q "profile written to $work/profiles/cpu-4.h5" <<<"$log" || { echo "FAIL: log lacks the output line"; echo "$log"; exit 1; }
"$check_profile" configs/clusters/cpu-4.yaml "$work/profiles/cpu-4.h5"
job=$(basename "$work"/good-*.out .out); job=${job#good-}
state=$(scontrol show job "$job" | grep -o 'JobState=[A-Z]*')
[[ "$state" == JobState=COMPLETED ]] || { echo "FAIL: job state $state"; exit 1; }

# 2. A job with 2 tasks for a 4-device cluster: non-zero exit and the clear error.
if sbatch --wait --gpus-per-node=0 --ntasks-per-node=2 --cpus-per-task=1 --output="$work/bad-%j.out" \
     scripts/slurm/profile_cluster.sh configs/clusters/cpu-4.yaml --max-bytes 16384; then
  echo "FAIL: a 2-task job for a 4-device cluster succeeded"; exit 1
fi
grep -q "the cluster has 4 devices" "$work"/bad-*.out || { echo "FAIL: no clear error"; cat "$work"/bad-*.out; exit 1; }
[[ ! -e "$work/profiles/cpu-4.h5.tmp" ]] || { echo "FAIL: a partial profile was left behind"; exit 1; }
echo "slurm profile test: 2 passed, 0 failed"
