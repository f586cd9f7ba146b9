#!/usr/bin/env bash
# A real single-node SLURM cluster on this Debian machine, for proving the SLURM profile
# (tests/test_slurm.py uses it; see /work/shared/notes/local-slurm.md for the measured facts).
#
#   scripts/local-slurm.sh start    # install if needed, write slurm.conf, start munged,
#                                   # slurmctld, slurmd; wait until the node is idle. Idempotent:
#                                   # a cluster already up from this script is left running.
#   scripts/local-slurm.sh stop     # stop the daemons this script started (by their pid files)
#   scripts/local-slurm.sh status   # exit 0 when the node answers and is usable
#   scripts/local-slurm.sh check    # exit 0 when this machine can run the cluster at all
#
# Needs root (or run it through sudo) and the Debian packages slurmctld slurmd slurm-client munge
# (installed with apt when missing). No systemd and no accounting database are needed; Snakemake
# must then poll job states with squeue (`slurm-status-command: squeue` in the profile).
# SLURM_BASE (default /tmp/landscape-slurm) holds the config, state, pid files and logs.
set -euo pipefail
BASE=${SLURM_BASE:-/tmp/landscape-slurm}
CONF=$BASE/slurm.conf
cmd=${1:-start}
PIDS=("$BASE/run/slurmd.pid" "$BASE/run/slurmctld.pid" "$BASE/run/munged.pid")

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { SLURM_CONF=$CONF sinfo -h -o %t 2>/dev/null | head -1 || true; }

stop() {
  local f pid
  for f in "${PIDS[@]}"; do
    alive "$f" || { rm -f "$f"; continue; }
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

can_run() {
  [ "$(id -u)" = 0 ] || { echo "not root (run through sudo)"; return 1; }
  command -v slurmctld >/dev/null || command -v apt-get >/dev/null \
    || { echo "no slurmctld binary and no apt-get to install it"; return 1; }
}

case "$cmd" in
  stop) stop; echo "SLURM stopped"; exit 0 ;;
  status)
    if alive "$BASE/run/slurmctld.pid" && alive "$BASE/run/slurmd.pid" \
        && [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]; then
      echo "SLURM is up: $(SLURM_CONF=$CONF sinfo -h)"; exit 0
    fi
    echo "SLURM is not up"; exit 1 ;;
  check) reason=$(can_run) && exit 0; echo "$reason"; exit 1 ;;
  start) ;;
  *) echo "usage: $0 start|stop|status|check" >&2; exit 2 ;;
esac

reason=$(can_run) || { echo "cannot start SLURM here: $reason" >&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sinfo >/dev/null || ! [ -x /usr/sbin/munged ]; then
  install=(apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge)
  DEBIAN_FRONTEND=noninteractive "${install[@]}" \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive "${install[@]}"; }
fi

HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory a little below physical, or slurmd reports "Low RealMemory" and the node drains.
MEM=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 256 ))
new_conf=$(cat <<CONF
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
# Finished jobs stay visible to squeue this long (s): Snakemake polls with squeue and must see
# every job's end state (keep it >= 3 x the first status-check delay).
MinJobAge=300
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
)

# Idempotent: the same config with every daemon alive and the node usable -> nothing to do.
if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new_conf" ] && "$0" status >/dev/null 2>&1 \
    && [ "$(readlink -f /etc/slurm/slurm.conf)" = "$(readlink -f "$CONF")" ]; then
  echo "SLURM already up: $(SLURM_CONF=$CONF sinfo -h)"
  exit 0
fi

stop
# A fresh cluster: no jobs recovered from an earlier one (they would hold the node's CPUs).
rm -rf "$BASE/state" "$BASE/log"
mkdir -p "$BASE"/{state/ctld,state/d,run,log}
printf '%s\n' "$new_conf" > "$CONF"
mkdir -p /etc/slurm
# The plugin's job step strips SLURM_CONF before its inner srun: the config must be at the default
# path. Keep a real file that is not ours.
if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
  mv /etc/slurm/slurm.conf "/etc/slurm/slurm.conf.before-landscape"
fi
ln -sfn "$CONF" /etc/slurm/slurm.conf
export SLURM_CONF=$CONF

# munge: reuse a munged that is already running (system service); otherwise start our own.
if ! munge -n >/dev/null 2>&1 </dev/null || ! unmunge >/dev/null 2>&1 < <(munge -n); then
  [ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 \
    of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key;
    chmod 0400 /etc/munge/munge.key; }
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$BASE/run/munged.pid"   # ours: `stop` ends it
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 </dev/null && break; sleep 0.1; done
fi

/usr/sbin/slurmctld
/usr/sbin/slurmd
for _ in $(seq 150); do
  state=$(node_state)
  case "$state" in
    idle|mix|alloc) echo "SLURM is up: $(sinfo -h)"; exit 0 ;;
    drain*|down*)
      scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
echo "SLURM did not come up (node state: ${state:-none}); see $BASE/log" >&2
sinfo -R >&2 || true
exit 1
