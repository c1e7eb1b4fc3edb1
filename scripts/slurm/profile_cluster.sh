#!/bin/bash
# Profile a GPU cluster once with Slurm: one MPI rank per GPU, NCCL backend, writes
# profiles/<cluster>.h5 for `strata plan --profile`. Usage:
#   sbatch --nodes=4 scripts/slurm/profile_cluster.sh configs/clusters/dgx-h100-4node.yaml [extra strata profile flags]
# Variables: STRATA (the binary, default build/strata), BACKEND (nccl|cpu, default nccl),
# DTYPES (default f32,bf16), PROFILE_DIR (default profiles), LAUNCHER (srun|mpirun, default srun).
#SBATCH --job-name=strata-profile
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --exclusive
#SBATCH --time=02:00:00
#SBATCH --output=strata-profile-%j.out
set -euo pipefail

cluster_yaml=${1:?usage: profile_cluster.sh CLUSTER.yaml [strata profile flags]}
shift
strata=${STRATA:-build/strata}
name=$(basename "${cluster_yaml}" .yaml)
backend=${BACKEND:-nccl}
dtypes=${DTYPES:-f32,bf16}
out_dir=${PROFILE_DIR:-profiles}
mkdir -p "${out_dir}"

# One rank per GPU: Slurm's task count must match the cluster's nodes × gpus_per_node, which
# strata checks (and refuses with a clear error otherwise).
launcher=${LAUNCHER:-srun}
if [[ "${launcher}" == srun ]]; then
  srun --mpi=pmix --ntasks-per-node="${SLURM_NTASKS_PER_NODE:-8}" \
    "${strata}" profile --backend "${backend}" --cluster "${cluster_yaml}" --out "${out_dir}/${name}.h5" \
    --dtypes "${dtypes}" "$@"
else
  mpirun -np "${SLURM_NTASKS}" --map-by ppr:"${SLURM_NTASKS_PER_NODE:-8}":node --bind-to none \
    "${strata}" profile --backend "${backend}" --cluster "${cluster_yaml}" --out "${out_dir}/${name}.h5" \
    --dtypes "${dtypes}" "$@"
fi
echo "profile written to ${out_dir}/${name}.h5"
