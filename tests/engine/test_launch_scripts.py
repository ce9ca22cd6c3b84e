"""The launch scripts run the project's Python: $PYTHON, else the active virtual
environment's, else the project's .venv, never a bare ``python`` from the PATH first."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("dist_train.sh", "dist_test.sh", "slurm_train.sh", "slurm_test.sh", "launch_common.sh")
ARGS = {
    "dist_train.sh": ["cfg.py", "2"],
    "dist_test.sh": ["cfg.py", "ckpt.pth", "2"],
    "slurm_train.sh": ["partition", "job", "cfg.py", "work"],
    "slurm_test.sh": ["partition", "job", "cfg.py", "ckpt.pth"],
}


def recorder(path, log):
    """An executable at ``path`` that writes its own path and arguments to ``log``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/usr/bin/env bash\necho "$0 $*" >> {log}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def project(tmp_path):
    """A copy of tools/'s launch scripts in a project folder with a .venv, and a fake srun
    that runs what it is given."""
    (tmp_path / "tools").mkdir()
    for name in SCRIPTS:
        shutil.copy(ROOT / "tools" / name, tmp_path / "tools" / name)
    log = tmp_path / "calls.log"
    recorder(tmp_path / ".venv" / "bin" / "python", log)
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    # srun -p PARTITION --OPTION=... PROGRAM ARGS: run PROGRAM ARGS
    srun.write_text(
        "#!/usr/bin/env bash\n"
        'while [ $# -gt 0 ]; do case "$1" in -p) shift 2;; --*) shift;; *) break;; esac; done\n'
        'exec "$@"\n'
    )
    srun.chmod(0o755)
    return tmp_path, log


def run(project_dir, script, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    environ["PATH"] = f"{project_dir / 'bin'}{os.pathsep}{environ['PATH']}"
    environ.update(env)
    cmd = ["bash", str(project_dir / "tools" / script), *ARGS[script]]
    return subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("script", sorted(ARGS))
def test_scripts_use_the_project_venv_then_the_active_one_then_python(project, script):
    folder, log = project
    done = run(folder, script)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split()[0] == str(folder / ".venv" / "bin" / "python")

    log.unlink()
    active = folder / "env"
    recorder(active / "bin" / "python", log)
    done = run(folder, script, VIRTUAL_ENV=str(active))
    assert done.returncode == 0, done.stderr
    assert log.read_text().split()[0] == str(active / "bin" / "python")

    log.unlink()
    chosen = folder / "chosen-python"
    recorder(chosen, log)
    done = run(folder, script, PYTHON=str(chosen), VIRTUAL_ENV=str(active))
    assert done.returncode == 0, done.stderr
    calls = log.read_text().split()
    assert calls[0] == str(chosen)
    expected_tool = "test.py" if "test" in script else "train.py"
    assert any(arg.endswith(expected_tool) for arg in calls)


TORCHRUN_SCRIPTS = ("dist_train.sh", "dist_test.sh")
HINT = "choose the Python with PYTHON=/path/to/python {} ... or activate the virtual environment"


@pytest.mark.parametrize("script", TORCHRUN_SCRIPTS)
def test_a_python_without_torch_stops_with_one_line_naming_it(project, script):
    folder, log = project
    # this interpreter without its site-packages (-S): no torch
    bare = folder / "bare-python"
    bare.write_text(f'#!/usr/bin/env bash\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    done = run(folder, script, PYTHON=str(bare))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"{folder / 'tools' / script}: {bare} (PYTHON) cannot import torch (No module named "
        f"'torch'); " + HINT.format(folder / "tools" / script) + " where torch and mmdet_like "
        "are installed"
    ]
    assert not log.exists()  # torchrun never started
    done = run(folder, script, PYTHON=str(folder / "no-such-python"))
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"{folder / 'tools' / script}: {folder / 'no-such-python'} (PYTHON) is not a program; "
    )


@pytest.mark.parametrize("script", TORCHRUN_SCRIPTS)
def test_python3_from_the_path_without_torch_says_how_it_was_chosen(project, script):
    system = Path("/usr/bin/python3")
    has_torch = system.exists() and subprocess.run([system, "-c", "import torch"]).returncode == 0
    if not system.exists() or has_torch:
        pytest.skip("needs a /usr/bin/python3 without torch")
    folder, log = project
    shutil.rmtree(folder / ".venv")
    # a clean environment: no PYTHON, no VIRTUAL_ENV, a PATH without the project's venv
    cmd = ["bash", str(folder / "tools" / script), *ARGS[script]]
    done = subprocess.run(cmd, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"{folder / 'tools' / script}: /usr/bin/python3 (python3 from the PATH: no PYTHON, no "
        f"active virtual environment, no {folder}/.venv) cannot import torch (No module named "
        "'torch'); " + HINT.format(folder / "tools" / script)
    )
    assert not log.exists()
