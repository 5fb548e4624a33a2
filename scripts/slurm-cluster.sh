#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the tests marked `slurm` and for trying
# the sbatch examples: munge + slurmctld + slurmd from Debian's packages (Slurm 22.05).
#
#   scripts/slurm-cluster.sh start    install (apt) if needed, start, wait until the node is idle
#   scripts/slurm-cluster.sh stop     scontrol shutdown, then end munged by its PID
#   scripts/slurm-cluster.sh status   exit 0 when the node answers and is idle
#
# Needs root (the daemons and apt). Runs without systemd. Every start wipes the controller's
# saved state and slurmd's spool: a controller restarted on old state can re-run a finished
# array job. Jobs inherit PATH from sbatch, so run Python by its full path in job scripts.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE_DIR=/var/lib/slurm/slurmctld
SPOOL_DIR=/var/lib/slurm/slurmd
LOG_DIR=/var/log/slurm
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/munged.pid"
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
START_TIMEOUT=${SLURM_START_TIMEOUT:-30}

log() { echo "slurm-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

alive() {  # alive PIDFILE: the process named in PIDFILE runs
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurm is not installed and apt-get is not available"
    log "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    if [[ ! -s "$MUNGE_KEY" ]]; then
        install -d -o munge -g munge -m 0700 "$(dirname "$MUNGE_KEY")"
        mungekey --create --keyfile="$MUNGE_KEY"
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    if alive "$MUNGE_PID"; then
        return
    fi
    rm -f "$MUNGE_PID" "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"
    runuser -u munge -- /usr/sbin/munged  # munged refuses to run as root
    munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"
}

write_config() {
    local cpus mem_kib mem_mib
    cpus=$(nproc)
    mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem_mib=$(( mem_kib / 1024 - 1024 ))
    (( mem_mib > 256 )) || mem_mib=256
    install -d -m 0755 "$CONF_DIR" "$LOG_DIR"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-cluster.sh: one node, this machine.
ClusterName=memo
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
MailProg=/bin/true
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
}

node_state() {
    sinfo -h -N -o %T 2>/dev/null | head -n1 || true
}

wait_idle() {
    local deadline=$(( SECONDS + START_TIMEOUT )) state=""
    while (( SECONDS < deadline )); do
        state=$(node_state)
        [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]] && return 0
        sleep 0.2
    done
    die "the node did not become idle within ${START_TIMEOUT}s (state: '${state:-none}'); " \
        "see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
}

running() {
    alive "$CTLD_PID" && alive "$SLURMD_PID" && alive "$MUNGE_PID"
}

cmd_start() {
    [[ $(id -u) -eq 0 ]] || die "starting the cluster needs root"
    if running && [[ $(node_state) == idle* || $(node_state) == mixed* ]]; then
        log "already running"
        return 0
    fi
    install_packages
    start_munge
    # A half-started cluster (one daemon left over) is stopped before a clean start.
    if alive "$CTLD_PID" || alive "$SLURMD_PID"; then
        stop_slurm
    fi
    write_config
    rm -rf "$STATE_DIR" "$SPOOL_DIR"
    install -d -m 0755 "$STATE_DIR" "$SPOOL_DIR"
    /usr/sbin/slurmctld -i  # -i: ignore any state that is left (there is none after the wipe)
    /usr/sbin/slurmd
    wait_idle
    log "running: $(sinfo -h -o '%P %a %D %T %c')"
}

stop_slurm() {
    if alive "$CTLD_PID" || alive "$SLURMD_PID"; then
        scontrol shutdown >/dev/null 2>&1 || true
        local deadline=$(( SECONDS + 15 ))
        while (alive "$CTLD_PID" || alive "$SLURMD_PID") && (( SECONDS < deadline )); do
            sleep 0.2
        done
        for pidfile in "$CTLD_PID" "$SLURMD_PID"; do
            if alive "$pidfile"; then
                kill "$(cat "$pidfile")" 2>/dev/null || true
            fi
        done
    fi
    rm -f "$CTLD_PID" "$SLURMD_PID"
}

cmd_stop() {
    stop_slurm
    if alive "$MUNGE_PID"; then
        kill "$(cat "$MUNGE_PID")"
        local deadline=$(( SECONDS + 10 ))
        while alive "$MUNGE_PID" && (( SECONDS < deadline )); do sleep 0.1; done
    fi
    log "stopped"
}

cmd_status() {
    if running; then
        local state
        state=$(node_state)
        echo "node: ${state:-no answer}"
        [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]]
    else
        echo "not running"
        return 1
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
