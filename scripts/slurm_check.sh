#!/usr/bin/env bash
# `just slurm-check`: `kdsr sweep slurm` on a real, one-node Slurm cluster brought up on this
# machine (Debian's slurm-wlm and munge; slurmctld, slurmd and munged on localhost only, all
# state in one temporary folder; needs root to install the packages, if missing).
#
# 1. A small grid (Beauty, 300 users, SASRec and GRU4Rec, ID only and + CDL on the attributes
#    modality, 2 seeds: 8 runs) is submitted as an array of 4 shards of 1 CPU each, with an
#    empty feature/teacher cache. Array tasks share the node, so two start at once; the
#    attributes features and the teacher's autoencoder must be built exactly once
#    (a cross-process lock on the cache), which the records' `from_cache` flags show.
# 2. The merged report's summary.csv must equal that of the same grid run on one machine
#    (`kdsr sweep run`, 1 thread per run, as the array tasks).
# 3. The same grid into a new folder: the array job is cancelled (scancel) while a run is in
#    flight and resubmitted; the second job must run only the missing runs, leave the records
#    finished before the cancel untouched, and end with every run recorded exactly once.
#
# Usage: scripts/slurm_check.sh [path/to/kdsr]   (KEEP=1 keeps the temporary folder)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kdsr="$(realpath "${1:-$root/target/release/kdsr}")"
[[ -x "$kdsr" ]] || { echo "slurm-check: no kdsr binary at $kdsr (run \`just build\`)" >&2; exit 2; }
started=$(date +%s)
say() { echo "slurm-check [$(($(date +%s) - started)) s]: $*"; }
fail() { echo "slurm-check FAILED: $*" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (Debian packages)"
    [[ $(id -u) == 0 ]] || fail "slurm-wlm and munge are not installed and this is not root"
    install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
    install || { apt-get update -qq && install; }
fi

w="$(mktemp -d /tmp/kdsr-slurm.XXXXXX)"
chmod 700 "$w"
cleanup() {
    local pids=() d p
    for d in slurmd slurmctld munged; do
        [[ -f "$w/$d.pid" ]] && p=$(cat "$w/$d.pid") && kill "$p" 2>/dev/null && pids+=("$p")
    done
    # The daemons save their state into $w as they shut down: removing $w before they exit
    # races with those writes ("Directory not empty"). Wait for them (at most 20 s).
    for _ in $(seq 100); do
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && { sleep 0.2; continue 2; }; done
        break
    done
    if [[ "${KEEP:-0}" == 1 ]]; then echo "slurm-check: kept $w"; return; fi
    for _ in 1 2 3; do rm -rf "$w" 2>/dev/null && return; sleep 1; done
    echo "slurm-check: warning: could not remove $w" >&2
}
trap cleanup EXIT

# --- the cluster -------------------------------------------------------------------------
host="$(hostname -s)"
mem_mb=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024))
ctld_port=$((20000 + RANDOM % 20000))
mkdir -p "$w/state" "$w/spool"
mungekey --create --keyfile="$w/munge.key" --force >/dev/null
chmod 600 "$w/munge.key"
/usr/sbin/munged --force --key-file="$w/munge.key" --socket="$w/munge.sock" --log-file="$w/munged.log" \
    --pid-file="$w/munged.pid" --seed-file="$w/munge.seed"
cat >"$w/slurm.conf" <<EOF
ClusterName=kdsrcheck
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$w/munge.sock
CredType=cred/munge
StateSaveLocation=$w/state
SlurmdSpoolDir=$w/spool
SlurmctldPidFile=$w/slurmctld.pid
SlurmdPidFile=$w/slurmd.pid
SlurmctldLogFile=$w/slurmctld.log
SlurmdLogFile=$w/slurmd.log
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=check Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$w/slurm.conf"
slurmctld -f "$SLURM_CONF" -c
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -o %t | grep -q idle || fail "the node did not come up (logs: $w/slurmctld.log, $w/slurmd.log)"
say "one-node cluster up: $(sinfo -h -o '%P %D node(s) %c CPUs %t')"

# --- the grid ----------------------------------------------------------------------------
grid="$w/slurmcheck.toml"
cat >"$grid" <<'EOF'
description = "slurm-check: a small grid for the one-node Slurm check"
seeds = [1, 2]

[fixed]
dataset = "beauty"
max_users = 300
train.max_epochs = 2

[axes]
model = ["sasrec", "gru4rec"]
modality = [
    { label = "ID" },
    { label = "CDL", mode = "cdl", modalities = ["attributes"] },
]

[report]
rows = ["metric"]
columns = ["model", "modality"]
metrics = ["hr@5", "hr@20", "ndcg@20"]
EOF
runs=8
cache="$w/cache"
k() { "$kdsr" --cache-dir "$cache" "$@"; }
count() { (find "$@" 2>/dev/null || true) | wc -l; }
records() { count "$1/slurmcheck/runs" -mindepth 2 -maxdepth 2 -name metrics.json; }

submit() { # out-folder -> job id
    k sweep slurm "$grid" --out "$1" --tasks 4 --cpus-per-task 1 --mem 2G --time 00:30:00 \
        --script "$1.sbatch" >/dev/null
    sbatch --parsable "$1.sbatch"
}
wait_job() { # job id
    for _ in $(seq 1800); do
        [[ -z "$(squeue -h -j "$1" 2>/dev/null)" ]] && return 0
        sleep 1
    done
    fail "job $1 did not end within 30 minutes"
}

# 1 + 2: array job with an empty cache, then the same grid on one machine.
say "submitting the grid as an array of 4 shards"
job=$(submit "$w/cluster")
wait_job "$job"
n=$(records "$w/cluster")
[[ $n == "$runs" ]] || fail "$n of $runs runs finished on the cluster (logs: $w/cluster/slurmcheck/slurm)"
say "array job $job: all $runs runs finished"
built=$( (grep -l '"from_cache": false' "$w"/cluster/slurmcheck/runs/*/metrics.json || true) | wc -l)
cached=$( (grep -l '"from_cache": true' "$w"/cluster/slurmcheck/runs/*/metrics.json || true) | wc -l)
[[ $built == 1 && $cached == 3 ]] ||
    fail "the 4 CDL runs should build the attributes teacher once and read it 3 times: built $built, cached $cached"
say "the attributes teacher was built once by the 4 array tasks' CDL runs (3 read the cache)"
k report "$grid" --out "$w/cluster" >/dev/null
k sweep run "$grid" --out "$w/single" --jobs 1 --run-threads 1 --quiet 2>/dev/null
k report "$grid" --out "$w/single" >/dev/null
cmp -s "$w/cluster/slurmcheck/summary.csv" "$w/single/slurmcheck/summary.csv" ||
    fail "the cluster's summary differs from one machine's: diff $w/cluster/slurmcheck/summary.csv $w/single/slurmcheck/summary.csv"
say "merged summary.csv equals the single-machine run's"

# 3: cancel mid-run, resubmit.
job=$(submit "$w/resume")
for _ in $(seq 600); do
    inflight=$(count "$w/resume/slurmcheck/.work" -mindepth 2 -maxdepth 2 -type d)
    [[ $(records "$w/resume") -ge 2 && $inflight -ge 1 ]] && break
    sleep 0.5
done
scancel "$job"
wait_job "$job"
before=$(records "$w/resume")
[[ $before -lt $runs ]] || fail "the job finished before it was cancelled"
mkdir -p "$w/before"
for f in "$w"/resume/slurmcheck/runs/*/metrics.json; do cp "$f" "$w/before/$(basename "$(dirname "$f")").json"; done
say "cancelled job $job with $before of $runs runs finished"
job=$(submit "$w/resume")
wait_job "$job"
[[ $(records "$w/resume") == "$runs" ]] || fail "after resubmission $(records "$w/resume") of $runs runs finished"
[[ $(count "$w/resume/slurmcheck/runs" -mindepth 1 -maxdepth 1 -type d) == "$runs" ]] ||
    fail "runs/ holds other folders than the grid's runs"
ran=$(cat "$w"/resume/slurmcheck/slurm/"${job}"_*.out | (grep -o '[0-9]* to run (' || true) | awk '{s += $1} END {print s + 0}')
[[ $ran == $((runs - before)) ]] || fail "the resubmitted job ran $ran runs, expected the $((runs - before)) missing"
for f in "$w"/before/*.json; do
    cmp -s "$f" "$w/resume/slurmcheck/runs/$(basename "$f" .json)/metrics.json" ||
        fail "$(basename "$f" .json) was finished before the cancel and was run again"
done
say "resubmitted job $job ran only the $ran missing runs; the $before finished before the cancel are untouched"
say "passed in $(($(date +%s) - started)) s"
