"""Helpers to write toy configs and run tools/ the way users do (subprocesses)."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

BASE_CONFIG = """
_base_ = ["{root}/configs/_base_/schedules/schedule_1x.py",
          "{root}/configs/_base_/default_runtime.py"]
custom_imports = dict(imports=["tests.engine.toy"])
model = dict(type="ToyRegressor")
data = dict(
    imgs_per_gpu={imgs_per_gpu},
    workers_per_gpu=0,
    train=dict(type="ToyRegressionDataset", num_samples={num_samples}),
    val=dict(type="ToyRegressionDataset", num_samples=8, seed=1),
)
optimizer = dict(lr=0.01, weight_decay=0.0)
lr_config = dict(warmup_iters=4, step=[3])
log_config = dict(interval=4)
total_epochs = 4
"""


def load_tool(name):
    """``tools/NAME.py`` imported as a module (the tools folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(path, extra="", imgs_per_gpu=4, num_samples=32):
    """A toy config inheriting the real schedule/runtime bases, plus ``extra`` lines."""
    text = BASE_CONFIG.format(root=ROOT, imgs_per_gpu=imgs_per_gpu, num_samples=num_samples)
    Path(path).write_text(text + extra)
    return str(path)


_LAUNCH_VARS = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
)


def env():
    environ = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
    environ["OMP_NUM_THREADS"] = "1"
    environ["PYTHON"] = PYTHON
    return environ


def start_train(config, work_dir, *args):
    """``python tools/train.py CONFIG --work-dir W ARGS`` as a Popen (stdout+stderr piped)."""
    cmd = [PYTHON, str(ROOT / "tools" / "train.py"), config, "--work-dir", str(work_dir), *args]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dist_train(config, work_dir, nproc, *args):
    """``tools/dist_train.sh CONFIG NPROC --work-dir W ARGS`` on a free port."""
    environ = env()
    environ["PORT"] = str(free_port())
    cmd = [
        "bash",
        str(ROOT / "tools" / "dist_train.sh"),
        config,
        str(nproc),
        "--work-dir",
        str(work_dir),
        *args,
    ]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc, timeout=120):
    """(returncode, output) of a started process."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every process it started
        out, _ = proc.communicate()
        raise AssertionError(f"timed out after {timeout} s:\n{out}") from None
    return proc.returncode, out


def run_python(args, cwd, expect_rc=0, timeout=180):
    """``python ARGS...`` in ``cwd`` as users run a tool; its output (stdout and stderr).
    The exit status must be ``expect_rc``; a failing run must print no traceback (the
    project's errors are one line)."""
    proc = subprocess.Popen(
        [PYTHON, *map(str, args)], cwd=cwd, env=env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    rc, out = finish(proc, timeout=timeout)
    assert rc == expect_rc, out
    if expect_rc:
        assert "Traceback" not in out, out
    return out


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def log_records(work_dir):
    (log_json,) = Path(work_dir).glob("*.log.json")
    return [json.loads(line) for line in log_json.read_text().splitlines()]
