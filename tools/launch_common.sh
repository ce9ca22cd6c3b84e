# Sourced by the launch scripts (dist_train.sh, dist_test.sh, slurm_train.sh, slurm_test.sh).

# The Python interpreter that runs the tools: PYTHON when it is set; else the active virtual
# environment's (VIRTUAL_ENV); else the project's own .venv (what `make install` creates);
# else python3 (or python) from the PATH. A bare `python` from the PATH is often another
# installation without torch or mmdet_like. Sets PROJECT_PYTHON and PROJECT_PYTHON_FROM (where
# it came from, for messages).
choose_python() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ -n "${PYTHON:-}" ]; then
        PROJECT_PYTHON=$PYTHON PROJECT_PYTHON_FROM="PYTHON"
    elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
        PROJECT_PYTHON="$VIRTUAL_ENV/bin/python"
        PROJECT_PYTHON_FROM="the active virtual environment"
    elif [ -x "$root/.venv/bin/python" ]; then
        PROJECT_PYTHON="$root/.venv/bin/python" PROJECT_PYTHON_FROM="the project's .venv"
    elif command -v python3 >/dev/null 2>&1; then
        PROJECT_PYTHON=$(command -v python3)
        PROJECT_PYTHON_FROM="python3 from the PATH: no PYTHON, no active virtual environment, no $root/.venv"
    else
        PROJECT_PYTHON=python
        PROJECT_PYTHON_FROM="python from the PATH: no PYTHON, no active virtual environment, no $root/.venv, no python3"
    fi
}

project_python() {
    choose_python
    echo "$PROJECT_PYTHON"
}

# require_torch_python SCRIPT: stop with one line (exit 1) when the chosen interpreter cannot
# import torch, naming it, where it came from and how to choose another; before torchrun,
# whose `python -m torch.distributed.run` would only say "No module named torch".
require_torch_python() {
    local why
    choose_python
    if ! command -v "$PROJECT_PYTHON" >/dev/null 2>&1; then
        echo "$1: $PROJECT_PYTHON ($PROJECT_PYTHON_FROM) is not a program; choose the Python" \
            "with PYTHON=/path/to/python $1 ... or activate the virtual environment where" \
            "torch and mmdet_like are installed" >&2
        exit 1
    fi
    if why=$("$PROJECT_PYTHON" -c "import importlib.util, sys
sys.exit(0 if importlib.util.find_spec('torch') else \"No module named 'torch'\")" 2>&1); then
        return 0
    fi
    echo "$1: $PROJECT_PYTHON ($PROJECT_PYTHON_FROM) cannot import torch (${why##*$'\n'});" \
        "choose the Python with PYTHON=/path/to/python $1 ... or activate the virtual" \
        "environment where torch and mmdet_like are installed" >&2
    exit 1
}

# torchrun_launch NPROC TOOL [ARGS...]: TOOL (train.py, test.py) in NPROC processes on this
# node through torchrun, with --launcher pytorch. Multi-node: NNODES, NODE_RANK,
# MASTER_ADDR and PORT.
torchrun_launch() {
    local tools_dir nproc=$1 tool=$2
    tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    shift 2
    require_torch_python "$0"
    PYTHONPATH="$(dirname "$tools_dir")${PYTHONPATH:+:$PYTHONPATH}" \
    exec "$PROJECT_PYTHON" -m torch.distributed.run \
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
