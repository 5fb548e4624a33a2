#!/usr/bin/env bash
# A SLURM array job: each task runs its shard of the sweep in scripts/sbatch_sweep.py.
#
# Into one shared file (on a filesystem every node sees):
#   mkdir -p logs
#   sbatch --export=ALL,PYTHON="$(command -v python)" scripts/sbatch_array.sh results.jsonl
#
# Into one file per task, joined afterwards:
#   mkdir -p logs shards
#   sbatch --export=ALL,PYTHON="$(command -v python)" scripts/sbatch_array.sh 'shards/part-%a.jsonl'
#   # when every task has finished:
#   memo merge results.jsonl shards/part-*.jsonl
#
# The job inherits PATH from sbatch, so name the Python to use by its full path (PYTHON).
# Create the --output folder before submitting, or every task fails to launch.
# Rerun one failed task of the 8 with --array=N and the shard count after OUT:
#   sbatch --array=3 --export=ALL,PYTHON="$(command -v python)" scripts/sbatch_array.sh OUT 8
# it reruns exactly shard 3 of 8, and skip=True in the sweep leaves its finished settings alone.
#SBATCH --job-name=memo-sweep
#SBATCH --array=0-7
#SBATCH --output=logs/%A_%a.out
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
exec "${PYTHON:-python3}" "${SWEEP:-scripts/sbatch_sweep.py}" "$@"
