# Sourced by the launch scripts (dist_train.sh, dist_test.sh, slurm_train.sh, slurm_test.sh).

# The Python interpreter that runs the tools: PYTHON when it is set; else the active virtual
# environment's (VIRTUAL_ENV); else the project's own .venv (what `make install` creates);
# else python3 (or python) from the PATH. A bare `python` from the PATH is often another
# installation without torch or mmdet_like.
project_python() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ -n "${PYTHON:-}" ]; then
        echo "$PYTHON"
    elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
        echo "$VIRTUAL_ENV/bin/python"
    elif [ -x "$root/.venv/bin/python" ]; then
        echo "$root/.venv/bin/python"
    elif command -v python3 >/dev/null 2>&1; then
        command -v python3
    else
        echo python
    fi
}

# torchrun_launch NPROC TOOL [ARGS...]: TOOL (train.py, test.py) in NPROC processes on this
# node through torchrun, with --launcher pytorch. Multi-node: NNODES, NODE_RANK,
# MASTER_ADDR and PORT.
torchrun_launch() {
    local tools_dir nproc=$1 tool=$2
    tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    shift 2
    PYTHONPATH="$(dirname "$tools_dir")${PYTHONPATH:+:$PYTHONPATH}" \
    exec "$(project_python)" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --master_port="${PORT:-29500}" \
        --nproc_per_node="$nproc" \
        "$tools_dir/$tool" "$@" --launcher pytorch
}

# slurm_launch PARTITION JOB_NAME TOOL [ARGS...]: TOOL on a slurm cluster, one task per GPU,
# started by srun, with --launcher=slurm. GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# PORT (29500) and SRUN_ARGS (extra srun options) from the environment.
slurm_launch() {
    local tools_dir partition=$1 job_name=$2 tool=$3
    tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    shift 3
    export PORT=${PORT:-29500}
    # shellcheck disable=SC2086  # SRUN_ARGS is a list of options
    PYTHONPATH="$(dirname "$tools_dir")${PYTHONPATH:+:$PYTHONPATH}" \
    exec srun -p "$partition" \
        --job-name="$job_name" \
        --gres=gpu:"${GPUS_PER_NODE:-8}" \
        --ntasks="${GPUS:-8}" \
        --ntasks-per-node="${GPUS_PER_NODE:-8}" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "$(project_python)" -u "$tools_dir/$tool" "$@" --launcher=slurm
}
