#!/bin/bash
# Train a model with Strata under Slurm: plan it (or take a plan), check that the plan's devices
# match the allocation, start one rank per GPU, keep logs and checkpoints under a run directory,
# and resume from the newest checkpoint when the job is requeued or resubmitted. Usage:
#   mkdir -p runs && sbatch --nodes=2 scripts/slurm/train_gpt.sh [extra strata train flags]
# Variables (environment; sbatch passes it on):
#   STRATA    the strata binary (default build/strata)
#   MODEL     model YAML for `strata plan` (default configs/models/gpt-1.3b.yaml)
#   CLUSTER   cluster YAML for `strata plan` (needed when PLAN is unset)
#   PROFILE   optional profile (.h5) of the cluster for `strata plan`
#   PLAN      a plan to run as is; unset = plan MODEL on CLUSTER into RUN_DIR/plan.yaml (once)
#   BACKEND   cuda|cpu (default cuda)      STEPS  optimizer steps (default 1000)
#   DATA      token file (.bin uint16) or any text file (byte tokens); unset = strata's synthetic data
#   RUN_DIR   logs, plan and checkpoints (default runs/$SLURM_JOB_NAME: a resubmitted job with
#             the same name resumes)
#   LAUNCHER  srun|mpirun (default srun)   SRUN_MPI  srun's --mpi plugin (default pmix)
#SBATCH --job-name=strata-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --exclusive
#SBATCH --time=04:00:00
#SBATCH --output=runs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
set -euo pipefail

say() { echo "train_gpt.sh: $*"; }
die() { echo "train_gpt.sh: error: $*" >&2; exit 2; }

strata=${STRATA:-build/strata}
model=${MODEL:-configs/models/gpt-1.3b.yaml}
backend=${BACKEND:-cuda}
steps=${STEPS:-1000}
launcher=${LAUNCHER:-srun}
run_dir=${RUN_DIR:-runs/${SLURM_JOB_NAME:-strata-train}}
tasks=${SLURM_NTASKS:?not inside a Slurm allocation (SLURM_NTASKS unset): submit with sbatch}
nodes=${SLURM_JOB_NUM_NODES:-1}
[[ -x "${strata}" ]] || die "STRATA=${strata} is not an executable strata binary"
[[ "${launcher}" == srun || "${launcher}" == mpirun ]] || die "LAUNCHER=${launcher}: must be srun or mpirun"
[[ "${steps}" =~ ^[1-9][0-9]*$ ]] || die "STEPS=${steps}: must be a positive whole number"
[[ -z "${DATA:-}" || -r "${DATA}" ]] || die "DATA=${DATA}: no such readable file"
mkdir -p "${run_dir}/logs" "${run_dir}/checkpoints"
restart=${SLURM_RESTART_COUNT:-0}
say "job ${SLURM_JOB_ID:-?} (restart ${restart}) on ${nodes} node(s), ${tasks} task(s); run dir ${run_dir}"

# 1. The plan: the given one, the one planned by an earlier run of this job, or a new one.
if [[ -n "${PLAN:-}" ]]; then
  plan=${PLAN}
  [[ -r "${plan}" ]] || die "PLAN=${plan}: no such readable file"
else
  plan=${run_dir}/plan.yaml
  if [[ -s "${plan}" ]]; then
    say "reusing ${plan} from an earlier run of this job"
  else
    [[ -n "${CLUSTER:-}" ]] || die "set PLAN to a plan, or CLUSTER (and MODEL) to plan one"
    plan_flags=(--model "${model}" --cluster "${CLUSTER}" --out "${plan}")
    [[ -z "${PROFILE:-}" ]] || plan_flags+=(--profile "${PROFILE}")
    say "planning ${model} on ${CLUSTER}"
    "${strata}" plan "${plan_flags[@]}"
  fi
fi

# 2. The plan's devices against the allocation, before any rank starts. The plan YAML's
# cluster block holds num_nodes and gpus_per_node (docs/plan_format.md).
read -r plan_nodes plan_gpus < <(awk '
  /^cluster:/ { inside = 1; next }
  inside && /^[^ #]/ { inside = 0 }
  inside && $1 == "num_nodes:" { n = $2 }
  inside && $1 == "gpus_per_node:" { g = $2 }
  END { print (n == "" ? "?" : n), (g == "" ? "?" : g) }' "${plan}")
[[ "${plan_nodes}" =~ ^[0-9]+$ && "${plan_gpus}" =~ ^[0-9]+$ ]] ||
  die "${plan}: cluster.num_nodes/gpus_per_node: missing or not numbers; is this a Strata plan?"
plan_devices=$((plan_nodes * plan_gpus))
if ((plan_devices != tasks)); then
  die "the plan ${plan} needs ${plan_devices} devices (${plan_nodes} node(s) x ${plan_gpus} GPUs) but this job has ${tasks} tasks (SLURM_NTASKS); resubmit with --nodes=${plan_nodes} --ntasks-per-node=${plan_gpus}, or re-plan for this allocation"
fi
if [[ "${backend}" != cpu ]] && ((plan_nodes != nodes)); then
  # GPUs: the plan's node groups must be real nodes (ranks are placed node by node).
  die "the plan ${plan} spans ${plan_nodes} node(s) but this job has ${nodes}; resubmit with --nodes=${plan_nodes} --ntasks-per-node=${plan_gpus}"
fi
per_node=$((tasks / nodes))

# 3. Resume when this job (requeued) or an earlier one with the same RUN_DIR saved a step.
train_flags=(--plan "${plan}" --backend "${backend}" --steps "${steps}" --checkpoint "${run_dir}/checkpoints")
[[ -z "${DATA:-}" ]] || train_flags+=(--data "${DATA}")
if compgen -G "${run_dir}/checkpoints/step-*/rank-00000.h5" > /dev/null; then
  say "checkpoints found in ${run_dir}/checkpoints: resuming"
  train_flags+=(--resume)
fi

# 4. One rank per GPU, in node order (rank = node * per_node + local rank), as the plan's meshes
# expect. The launcher runs in the background so that the time-limit signal (USR1, 300 s before
# the end) is handled at once: the job requeues itself and resumes from its last checkpoint.
if [[ "${launcher}" == srun ]]; then
  launch=(srun --mpi="${SRUN_MPI:-pmix}" --kill-on-bad-exit=1 --distribution=block
          --ntasks="${tasks}" --ntasks-per-node="${per_node}")
else
  launch=(mpirun -np "${tasks}" --map-by ppr:"${per_node}":node --bind-to none)
fi
log=${run_dir}/logs/train-${SLURM_JOB_ID:-local}-${restart}.log
requeue() {
  say "time limit near: requeueing job ${SLURM_JOB_ID}"
  scontrol requeue "${SLURM_JOB_ID}"
}
trap requeue USR1
say "starting ${tasks} rank(s) with ${launcher}; log ${log}"
set +e
"${launch[@]}" "${strata}" train "${train_flags[@]}" "$@" > >(tee -a "${log}") 2>&1 &
rank_pid=$!
status=0
wait "${rank_pid}" || status=$?
while ((status > 128)) && kill -0 "${rank_pid}" 2> /dev/null; do  # woken by a signal: keep waiting
  status=0
  wait "${rank_pid}" || status=$?
done
set -e
if ((status != 0)); then
  say "training failed with exit code ${status}; log ${log}"
  exit "${status}"
fi
say "training finished: ${steps} steps; checkpoints in ${run_dir}/checkpoints"
