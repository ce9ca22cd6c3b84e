"""Helpers to write toy configs and run tools/ the way users do: in a subprocess
(:func:`run_python`, where the process is the point) or in this process exactly as the
tool's ``__main__`` block runs it (:func:`run_tool_here`, without 2-4 s of imports a run)."""

import contextlib
import importlib.util
import io
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from mmdet_like.errors import run_tool

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


_TOOL_MODULES = {}


def tool_module(path):
    """``tools/PATH`` (``"analysis_tools/get_flops.py"``, ``"print_config"``) imported once a
    session as a module; its ``__main__`` block does not run."""
    path = Path(path)
    path = path if path.is_absolute() else ROOT / "tools" / path
    path = path.with_suffix(".py").resolve()
    if path not in _TOOL_MODULES:
        environ = dict(os.environ)  # tools/train.py, test.py set variables at import
        try:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            _restore_environ(environ)
        _TOOL_MODULES[path] = module
    return _TOOL_MODULES[path]


def _restore_environ(saved):
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


class _Both(io.TextIOBase):
    """A stream writing to its own buffer and to the combined one (as ``2>&1`` does)."""

    def __init__(self, combined):
        self.own, self.combined = io.StringIO(), combined

    def writable(self):
        return True

    def write(self, text):
        self.own.write(text)
        self.combined.write(text)
        return len(text)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Python's own ``showwarning``: to ``sys.stderr`` (pytest records warnings instead)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class ToolRun(tuple):
    """``(status, output)`` of a tool run (output: stdout and stderr as ``2>&1`` gives
    them), with ``.stdout`` and ``.stderr`` apart."""

    def __new__(cls, status, output, stdout, stderr):
        run = super().__new__(cls, (status, output))
        run.status, run.output, run.stdout, run.stderr = status, output, stdout, stderr
        return run


@contextlib.contextmanager
def _process_like_state(argv, cwd):
    """``sys.argv`` and the working directory set for a run; warnings shown on stderr with
    Python's default filters; the project's logger without handlers (``get_logger`` adds
    them on the redirected streams). Afterwards all of that, the environment, the RNGs (some
    tools seed them), the CPU allocator and matplotlib's backend are restored and its
    figures closed."""
    from mmdet_like.ops import cpu_caching_allocator_enabled, disable_cpu_caching_allocator

    saved_argv, saved_cwd, environ = sys.argv, os.getcwd(), dict(os.environ)
    caching_allocator = cpu_caching_allocator_enabled()
    rngs = torch.get_rng_state(), np.random.get_state(), random.getstate()  # noqa: NPY002
    logger = logging.getLogger("mmdet_like")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    for handler in handlers:  # get_logger adds handlers on the redirected streams
        logger.removeHandler(handler)
    matplotlib = sys.modules.get("matplotlib")
    backend = matplotlib.rcParams._get_backend_or_none() if matplotlib else None
    try:
        sys.argv = list(argv)
        os.chdir(cwd)
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's defaults, shown on stderr
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):  # fmt: skip
                warnings.simplefilter("ignore", category)
            # torch's @record (tools/train.py, test.py) cannot enable the fault handler on a
            # StringIO; the process it stands for has a real stderr and no such warning
            warnings.filterwarnings("ignore", "Unable to enable fault handler", UserWarning)
            warnings.showwarning = _show_warning
            yield
    finally:
        if cpu_caching_allocator_enabled() and not caching_allocator:
            disable_cpu_caching_allocator()  # tensors it handed out stay valid
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        _restore_environ(environ)
        torch.set_rng_state(rngs[0])
        np.random.set_state(rngs[1])  # noqa: NPY002
        random.setstate(rngs[2])
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
        if backend is not None and sys.modules["matplotlib"].get_backend() != backend:
            sys.modules["matplotlib"].use(backend)


def call_tool(script, *args, cwd):
    """``python tools/SCRIPT ARGS...`` in ``cwd``, run in this process as the script's
    ``__main__`` block runs it: ``sys.exit(run_tool(main))``. A :class:`SystemExit` (argparse's
    status 2, ``sys.exit("message")``) ends it as it ends the process; any other exception is a
    bug and propagates with its traceback. A failing run must print no traceback.

    tools/train.py and test.py make the CPU caching allocator torch's allocator as they start
    (``enable_cpu_caching_allocator_from_env``), here as in their own process; afterwards
    the allocator this process had is put back."""
    module = tool_module(script)
    output = io.StringIO()
    stdout, stderr = _Both(output), _Both(output)
    argv = [str(Path(module.__file__)), *map(str, args)]
    with _process_like_state(argv, cwd), contextlib.redirect_stdout(stdout):
        with contextlib.redirect_stderr(stderr):
            try:
                status = run_tool(module.main)
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    status = exc.code or 0
                else:  # sys.exit("message"): printed to stderr, status 1
                    print(exc.code, file=sys.stderr)
                    status = 1
    run = ToolRun(status, output.getvalue(), stdout.own.getvalue(), stderr.own.getvalue())
    if status:
        assert "Traceback" not in run.output, run.output
    return run


def run_tool_here(args, cwd, expect_rc=0):
    """:func:`run_python` for ``args = [tools/SCRIPT.py, ARGS...]``, run in this process
    (:func:`call_tool`); the status must be ``expect_rc``. Its output (stdout and stderr)."""
    run = call_tool(args[0], *args[1:], cwd=cwd)
    assert run.status == expect_rc, run.output
    return run.output


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
