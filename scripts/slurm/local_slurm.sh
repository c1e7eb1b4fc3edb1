#!/usr/bin/env bash
# A real one-node Slurm (munge + slurmctld + slurmd) on localhost, for tests of the sbatch scripts.
#   local_slurm.sh start DIR   -> installs the packages if missing, starts the daemons, prints the
#                                 SLURM_CONF to export; waits until the node is idle.
#   local_slurm.sh stop DIR    -> stops the daemons started from DIR.
set -euo pipefail
action=${1:?usage: local_slurm.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: local_slurm.sh start|stop DIR}")
cpus=${STRATA_SLURM_CPUS:-8}

stop() {
  for name in slurmd slurmctld munged; do
    if [[ -f "$dir/$name.pid" ]]; then
      kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
      rm -f "$dir/$name.pid"
    fi
  done
}

if [[ "$action" == stop ]]; then stop; exit 0; fi
[[ "$action" == start ]] || { echo "local_slurm.sh: unknown action '$action'" >&2; exit 2; }

STRATA_EXTRA_PACKAGES="slurmctld slurmd slurm-client munge" "$(dirname "$0")/../install_deps.sh"
mkdir -p "$dir"/{state,spool,munge,log}
chmod 700 "$dir/munge"
host=$(hostname -s)
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))

# munge: a key of our own and a daemon on our own socket.
[[ -f "$dir/munge/munge.key" ]] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
       --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"

cat > "$dir/slurm.conf" <<CONF
ClusterName=strata-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${STRATA_SLURMCTLD_PORT:-16817}
SlurmdPort=${STRATA_SLURMD_PORT:-16818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=5
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
alive() { [[ -f "$dir/$1.pid" ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }
for _ in $(seq 1 60); do
  # A daemon that died (a port in use, a bad config) will never answer: stop waiting at once.
  if ! alive slurmctld || ! alive slurmd; then sleep 1; alive slurmctld && alive slurmd || break; fi
  if timeout 5 sinfo -h -o '%T' 2>/dev/null | grep -q -E '^idle'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "local_slurm.sh: the Slurm node did not come up (daemon died or not idle within 60 s); logs in $dir/log" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
stop
exit 1
