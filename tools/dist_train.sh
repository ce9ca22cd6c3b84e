#!/usr/bin/env bash
# Train with GPUS processes on this node through torchrun (python -m torch.distributed.run).
#
#   tools/dist_train.sh CONFIG GPUS [train.py args, e.g. --work-dir DIR --seed 0]
#
# Multi-node: run it on every node with the same MASTER_ADDR and PORT, NNODES the number of
# nodes and NODE_RANK 0..NNODES-1. The interpreter: PYTHON, else the active virtual
# environment's, else the project's .venv, else python3 (tools/launch_common.sh); one that
# cannot import torch stops the script with one line saying which it was and how to choose.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args]" >&2
    exit 2
fi
# shellcheck source=tools/launch_common.sh
source "$(dirname "$0")/launch_common.sh"
torchrun_launch "$2" train.py "$1" "${@:3}"
