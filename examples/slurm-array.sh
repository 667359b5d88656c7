#!/usr/bin/env bash
# A sharded batch on Slurm: an array of 4 tasks, each reading its part of one manifest
# (--shard auto takes SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT), then a merge that runs
# after every task ended:
#   jobid=$(sbatch --parsable slurm-array.sh)
#   sbatch --dependency=afterany:$jobid --wrap \
#     "cvekyc merge out/part-*.jsonl -o out/all.jsonl --inputs manifest.csv"
# A task that is requeued resumes its part (--resume).
#SBATCH --job-name=cvekyc-batch
#SBATCH --array=0-3
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
#SBATCH --requeue
set -euo pipefail
# Credentials from the environment (CVEKYC_API_KEY, CVEKYC_API_SECRET), e.g. sourced from a
# file readable by you only.
mkdir -p out
exec cvekyc batch manifest.csv --shard auto --resume \
  -o "out/part-${SLURM_ARRAY_TASK_ID}.jsonl" --concurrency 16
