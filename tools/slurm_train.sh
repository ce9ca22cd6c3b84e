#!/usr/bin/env bash
# Train on a slurm cluster: one task per GPU, started by srun.
#
#   [GPUS=16 GPUS_PER_NODE=8 CPUS_PER_TASK=5 PORT=29500 SRUN_ARGS=...] \
#       tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
#
# The interpreter: PYTHON, else the active virtual environment's, else the project's .venv,
# else python3 (tools/launch_common.sh).
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]" >&2
    exit 2
fi
# shellcheck source=tools/launch_common.sh
source "$(dirname "$0")/launch_common.sh"
slurm_launch "$1" "$2" train.py "$3" --work-dir="$4" "${@:5}"
