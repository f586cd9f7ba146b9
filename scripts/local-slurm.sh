#!/usr/bin/env bash
# Start (or stop) a real single-node SLURM cluster on this Debian machine, for proving the SLURM
# profile: `scripts/local-slurm.sh start`, `scripts/local-slurm.sh stop`.
# Needs root and the Debian packages slurmctld slurmd slurm-client munge (installed if missing).
set -euo pipefail
BASE=${SLURM_BASE:-/tmp/landscape-slurm}
cmd=${1:-start}

stop() {
  for f in "$BASE/run/slurmd.pid" "$BASE/run/slurmctld.pid" /run/munge/munged.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi

if ! command -v slurmctld >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    slurmctld slurmd slurm-client munge
fi
stop
mkdir -p "$BASE"/{state/ctld,state/d,run,log}
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 256 ))
cat > "$BASE/slurm.conf" <<CONF
ClusterName=landscape
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state/ctld
SlurmdSpoolDir=$BASE/state/d
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p /etc/slurm
ln -sf "$BASE/slurm.conf" /etc/slurm/slurm.conf   # the plugin's job step needs this path
install -d -o munge -g munge -m 0755 /run/munge
runuser -u munge -- /usr/sbin/munged
/usr/sbin/slurmctld
/usr/sbin/slurmd
for _ in $(seq 100); do
  [ "$(sinfo -h -o %t 2>/dev/null | head -1)" = idle ] && { echo "SLURM is up: $(sinfo -h)"; exit 0; }
  sleep 0.2
done
echo "SLURM did not come up; see $BASE/log" >&2
exit 1
