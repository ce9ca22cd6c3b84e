#!/usr/bin/env bash
# Test with GPUS processes on this node through torchrun (python -m torch.distributed.run).
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args, e.g. --eval bbox segm]
#
# Multi-node: run it on every node with the same MASTER_ADDR and PORT, NNODES the number of
# nodes and NODE_RANK 0..NNODES-1. The interpreter: PYTHON, else the active virtual
# environment's, else the project's .venv, else python3 (tools/launch_common.sh); one that
# cannot import torch stops the script with one line saying which it was and how to choose.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args]" >&2
    exit 2
fi
# shellcheck source=tools/launch_common.sh
source "$(dirname "$0")/launch_common.sh"
torchrun_launch "$3" test.py "$1" "$2" "${@:4}"
