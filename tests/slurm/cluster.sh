#!/bin/bash
# A single-node SLURM cluster (munge + slurmctld + slurmd) in a scratch folder, for tests.
#   cluster.sh start DIR   writes DIR/slurm.conf, starts the daemons, waits until the node is idle
#   cluster.sh stop DIR    stops them
# Commands then need SLURM_CONF=DIR/slurm.conf. Needs Debian's slurm-wlm and munge, and root.
set -euo pipefail
action=$1
dir=$(realpath -m "$2")
stop() {
  for pidfile in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}
if [ "$action" = stop ]; then stop; exit 0; fi
mkdir -p "$dir"/state "$dir"/spool
host=$(hostname -s)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
head -c 1024 /dev/urandom > "$dir"/munge.key
chmod 400 "$dir"/munge.key
munged --force --key-file="$dir"/munge.key --socket="$dir"/munge.sock --pid-file="$dir"/munged.pid \
  --log-file="$dir"/munged.log --seed-file="$dir"/munge.seed
cpus=$(nproc)
cat > "$dir"/slurm.conf <<CONF
ClusterName=forcebench-test
SlurmctldHost=$host
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=4096 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir"/slurm.conf
slurmctld -i
slurmd
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then exit 0; fi
  sleep 1
done
echo "cluster.sh: the node did not become idle; see $dir/*.log" >&2
stop
exit 1
