"""The command-line tools print the project's own errors as one message and exit non-zero;
the traceback comes only with ``--debug`` or ``MMDET_LIKE_DEBUG=1``.

tools/train.py and test.py run in subprocesses: the process (its exit status, the traceback
Python prints) is the point here, and both swap the process's CPU allocator at start.
tools/check_dataset.py runs in this process (``call_tool``, as its ``__main__`` block)."""

import subprocess

import pytest

from mmdet_like.errors import ProjectError
from tests.engine.cli_utils import PYTHON, ROOT, call_tool, env, write_config


def _run(tool, *args, debug_env=False):
    environ = env()
    environ.pop("MMDET_LIKE_DEBUG", None)
    if debug_env:
        environ["MMDET_LIKE_DEBUG"] = "1"
    return subprocess.run(
        [PYTHON, str(ROOT / "tools" / tool), *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def misspelt_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "misspelt.py"
    path.write_text(
        f'_base_ = ["{ROOT}/configs/mask_rcnn_r50_fpn_1x.py"]\n'
        'model = dict(type="MaskRCN", pretrained=None)\n'
    )
    return str(path)


def test_train_with_a_misspelt_model_type_prints_one_message(misspelt_config, tmp_path):
    out = _run("train.py", misspelt_config, "--work-dir", str(tmp_path))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr, out.stderr
    assert "train.py: error: " in out.stderr
    assert "Did you mean 'MaskRCNN'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 2  # the message, and how to see more


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(misspelt_config, tmp_path, how):
    args = ["--debug"] if how == "flag" else []
    out = _run("train.py", misspelt_config, "--work-dir", str(tmp_path), *args,
               debug_env=how == "env")  # fmt: skip
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "RegistryError" in out.stderr


def test_test_tool_with_a_missing_checkpoint_and_check_dataset_with_a_bad_config(
    tmp_path, monkeypatch
):
    config = write_config(tmp_path / "toy.py", extra="data.update(test=data['val'])\n")
    out = _run("test.py", config, str(tmp_path / "missing.pth"), "--out", str(tmp_path / "r.pkl"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "missing.pth" in out.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("model = dict(\n")
    monkeypatch.delenv("MMDET_LIKE_DEBUG", raising=False)
    out = call_tool("check_dataset.py", str(bad), cwd=ROOT)
    assert out.status != 0 and "Traceback" not in out.stderr, out.stderr
    assert "bad.py" in out.stderr


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("tools/test.py", ["c.py", "m.pth", "--show-dir", "out"]),
        ("tools/demo_pictures.py", ["c.py", "m.pth", "images", "out.png"]),
        ("tools/analysis_tools/analyze_results.py", ["c.py", "r.pkl", "out"]),
        ("tools/analysis_tools/browse_dataset.py", ["c.py", "--output-dir", "out"]),
        ("demo/image_demo.py", ["a.png", "c.py", "m.pth"]),
    ],
)
def test_every_drawing_tool_refuses_a_bad_drawing_option_in_one_line(script, args, tmp_path):
    # checked before any file is read: the paths need not exist
    for option, value, message in [
        ("--thickness", "0.5", "--thickness 0.5: must be a whole number of pixels"),
        ("--font-scale", "big", "--font-scale big: must be a number above 0"),
        ("--palette", "1,2", "--palette 1,2: a colour is R,G,B"),
    ]:
        run = call_tool(ROOT / script, *args, option, value, cwd=tmp_path)
        errors = [line for line in run.stderr.splitlines() if ": error: " in line]
        assert run.status == 1 and len(errors) == 1 and message in errors[0], run.output


def test_test_tool_drawing_options_need_show_dir(tmp_path):
    run = call_tool(ROOT / "tools/test.py", "c.py", "m.pth", "--out", "r.pkl", "--thickness",
                    "2", cwd=tmp_path)  # fmt: skip
    assert run.status == 2 and "--thickness set how --show / --show-dir draw" in run.stderr


def test_every_project_error_class_is_a_project_error():
    from mmdet_like.datasets import DatasetError
    from mmdet_like.engine import CheckpointError, ConfigError
    from mmdet_like.engine.runner import DataLoaderWorkerError, NonFiniteLossError
    from mmdet_like.registry import BuildError, RegistryError
    from mmdet_like.visualization import DrawOptionError

    for cls in (DatasetError, CheckpointError, ConfigError, DataLoaderWorkerError,
                NonFiniteLossError, BuildError, RegistryError, DrawOptionError):  # fmt: skip
        assert issubclass(cls, ProjectError), cls
    # and still the built-in class callers catch
    assert issubclass(RegistryError, KeyError) and issubclass(ConfigError, ValueError)


def _scripts():
    """tools/ and demo/ scripts, but tools/dev/: those run in the mmdetection side
    environment (``make mmdet-fixtures``), where mmdet_like is not installed."""
    return sorted(
        p for folder in ("tools", "demo") for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts and (ROOT / "tools" / "dev") not in p.parents
    )  # fmt: skip


def test_every_script_runs_its_main_through_run_tool():
    """Every tools/ and demo/ script ends in ``if __name__ == "__main__":
    sys.exit(run_tool(main))``, so each prints the project's errors as the processes above
    do; tests may then run a script's errors in-process (``call_tool``) instead of in a
    process of its own."""
    import ast

    scripts = _scripts()
    assert len(scripts) > 25
    for script in scripts:
        tree = ast.parse(script.read_text())
        blocks = [
            node for node in tree.body
            if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
        ]  # fmt: skip
        assert len(blocks) == 1, f"{script}: no single __main__ block"
        assert [ast.unparse(s) for s in blocks[0].body] == ["sys.exit(run_tool(main))"], script


def test_ctrl_c_in_any_tool_is_one_line_and_status_130(capsys, monkeypatch):
    from mmdet_like.errors import StoppedBySignal, run_tool

    monkeypatch.setattr("sys.argv", ["some_tool.py"])

    def interrupted():
        raise KeyboardInterrupt

    assert run_tool(interrupted) == 130
    assert capsys.readouterr().err == "some_tool.py: interrupted (Ctrl-C)\n"

    def stopped():
        raise StoppedBySignal("stopped by SIGTERM at epoch 1; checkpoint c.pth", 15)

    assert run_tool(stopped) == 143
    assert (
        capsys.readouterr().err == "some_tool.py: stopped by SIGTERM at epoch 1; checkpoint c.pth\n"
    )
