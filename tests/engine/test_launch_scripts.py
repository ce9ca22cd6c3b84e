"""The launch scripts run the project's Python: $PYTHON, else the active virtual
environment's, else the project's .venv, never a bare ``python`` from the PATH first."""

import os
import shutil
import stat
import subprocess
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
