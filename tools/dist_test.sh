#!/usr/bin/env bash
# Test with GPUS processes on this node through torchrun (python -m torch.distributed.run).
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args, e.g. --eval bbox segm]
#
# Multi-node: run it on every node with the same MASTER_ADDR and PORT, NNODES the number of
# nodes and NODE_RANK 0..NNODES-1. The interpreter: PYTHON, else the active virtual environment's,
# else the project's .venv, else python3 (tools/python_env.sh).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/python_env.sh
source "$TOOLS_DIR/python_env.sh"
PYTHON=$(project_python)

PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$GPUS" \
    "$TOOLS_DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
