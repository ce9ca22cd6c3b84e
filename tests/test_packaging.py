"""The package as pip installs it: configs found by name, the mmdet-like command, and a wheel
that carries its dependencies, configs and tools.

The wheel test builds a source distribution, then the wheel from that (so the sdist holds
all a build needs), without the compiled ops (``MMDET_LIKE_WITH_OPS=0``, seconds instead of
minutes); it unpacks the wheel outside the repository and runs it there: the installed
package finds its configs in ``mmdet_like/.mim`` and runs on the fallback ops.
"""

import email
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import mmdet_like
from mmdet_like import cli, get_config, get_config_path, list_configs
from mmdet_like.engine import load_config
from mmdet_like.engine.config import ConfigFileNotFoundError
from mmdet_like.engine.config_files import ConfigNameError

ROOT = Path(__file__).resolve().parents[1]


def test_config_names_resolve_to_the_shipped_files():
    names = list_configs()
    assert "mask_rcnn_r50_fpn_1x" in names and "demo/mask_rcnn_r18_fpn_demo" in names
    assert not [n for n in names if "_base_" in n]
    expected = ROOT / "configs" / "mask_rcnn_r50_fpn_1x.py"
    for name in ("mask_rcnn_r50_fpn_1x", "mask_rcnn_r50_fpn_1x.py"):
        assert Path(get_config_path(name)) == expected
    # a bare file name finds a config in a sub-folder when only one has it
    demo = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"
    assert Path(get_config_path("mask_rcnn_r18_fpn_demo")) == demo
    assert Path(get_config_path("demo/mask_rcnn_r18_fpn_demo")) == demo
    cfg = get_config("retinanet_r50_fpn_1x", {"model.bbox_head.num_classes": 3})
    assert cfg.model.type == "RetinaNet" and cfg.model.bbox_head.num_classes == 3


def test_unknown_config_names_say_what_is_close(tmp_path, monkeypatch):
    with pytest.raises(ConfigNameError, match=r"did you mean mask_rcnn_r50_fpn_1x"):
        get_config_path("mask_rcnn_r50_fpn_1")
    with pytest.raises(ConfigNameError, match="no shipped config is called 'nothing_like_it'"):
        get_config_path("nothing_like_it")
    # load_config: a path that names no file is tried as a config name, else the error says
    # both ways of naming a config
    monkeypatch.chdir(tmp_path)  # outside the repository: configs/... is then a name
    assert load_config("configs/faster_rcnn_r50_fpn_1x.py").model.type == "FasterRCNN"
    assert load_config("faster_rcnn_r50_fpn_1x").model.type == "FasterRCNN"
    with pytest.raises(ConfigFileNotFoundError, match="mmdet-like list-configs"):
        load_config("my_configs/faster.py")


def test_the_command_lists_configs_and_runs_tools(capsys):
    assert cli.main(["list-configs", "demo/*"]) == 0
    assert "demo/mask_rcnn_r18_fpn_demo" in capsys.readouterr().out.split()
    assert cli.main(["print-config", "rpn_r50_fpn_1x"]) == 0
    assert "type='RPN'" in capsys.readouterr().out
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err
    assert cli.main([]) == 2
    # a tool's own error: one line and its exit status, as `python tools/x.py` gives
    assert cli.main(["print-config", "nothing_like_it"]) != 0
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and "Traceback" not in err
    # every sub-command names a script that exists
    for command in cli.COMMANDS:
        assert os.path.isfile(cli.script_path(command)), command


def _copy_source(target):
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "work_dirs", "data", "__pycache__",
        "*.so", ".mim", ".pytest_cache", ".ruff_cache", ".hypothesis",
    )  # fmt: skip
    shutil.copytree(ROOT, target, ignore=ignore)


def test_the_build_asks_for_torch_only_where_it_compiles_the_ops():
    """The build environment starts without torch (pip installs what these hooks return):
    they answer without importing it, with torch and ninja unless MMDET_LIKE_WITH_OPS=0."""
    code = (
        "import json, sys; sys.modules['torch'] = None; sys.path.insert(0, '.')\n"
        "import build_backend as b\n"
        "print(json.dumps([b.get_requires_for_build_wheel(), "
        "b.get_requires_for_build_editable(), b.get_requires_for_build_sdist()]))"
    )
    for with_ops, expected in (("", {"torch>=2.13", "ninja"}), ("0", set())):
        env = dict(os.environ, MMDET_LIKE_WITH_OPS=with_ops)
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert out.returncode == 0, out.stderr
        for requires in json.loads(out.stdout):
            assert {r for r in requires if r.startswith(("torch", "ninja"))} == expected


SDIST_MEMBERS = (
    "build_backend.py", "setup.py", "pyproject.toml", "requirements.txt",
    "requirements/export.txt", "ops/nms/nms_cpu.cpp", "configs/mask_rcnn_r50_fpn_1x.py",
    "tools/train.py", "demo/image_demo.py", "mmdet_like/__init__.py",
)  # fmt: skip


def test_wheel_carries_dependencies_configs_tools_and_runs_installed(tmp_path):
    source = tmp_path / "source"
    _copy_source(source)
    env = dict(os.environ, MMDET_LIKE_WITH_OPS="0")
    # the source distribution, by the build backend pip calls (in a process of its own)
    code = (
        "import sys; sys.path.insert(0, '.'); import build_backend; "
        f"print(build_backend.build_sdist({str(tmp_path / 'sdist')!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=source, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    sdist = tmp_path / "sdist" / out.stdout.split()[-1]
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
        top = archive.getnames()[0].split("/")[0]
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for member in SDIST_MEMBERS:
        assert member in members, member
    # the wheel, built from the unpacked source distribution
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(tmp_path / "unpacked" / top), "--no-deps",
         "--no-build-isolation", "-w", str(tmp_path / "dist"), "-q"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("mmdet_like-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(info))
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    for shipped in (
        "mmdet_like/.mim/configs/mask_rcnn_r50_fpn_1x.py",
        "mmdet_like/.mim/configs/_base_/models/mask_rcnn_r50_fpn.py",
        "mmdet_like/.mim/tools/train.py",
        "mmdet_like/.mim/tools/launch_common.sh",
        "mmdet_like/.mim/demo/image_demo.py",
    ):
        assert shipped in names, shipped
    assert not [n for n in names if n.endswith(".so")]  # built without ops
    assert "mmdet-like = mmdet_like.cli:main" in entry_points

    requires = metadata.get_all("Requires-Dist")
    runtime = {r.split(";")[0].replace(" ", "") for r in requires if "extra ==" not in r}
    with open(ROOT / "requirements.txt") as f:
        listed = {line.split("#")[0].strip() for line in f} - {""}
    assert runtime == listed  # without ops: the ranges, torch not pinned
    assert "torch>=2.13" in runtime
    extras = {r.split("extra ==")[1].strip(" '\"") for r in requires if "extra ==" in r}
    assert extras == {"export", "tensorboard", "wandb", "mlflow", "timm", "tests"}
    assert any(r.startswith("onnxruntime") and "export" in r for r in requires)
    assert any(r.startswith("mlflow-skinny") and "mlflow" in r for r in requires)

    # installed (unpacked) outside the repository: configs by name from .mim, fallback ops
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    run_env = {k: v for k, v in os.environ.items() if k != "MMDET_LIKE_OPS_BACKEND"}
    run_env["PYTHONPATH"] = str(site)
    script = (
        # this venv's editable install of the checkout would serve mmdet_like._ext to the
        # unpacked package (its finder maps every mmdet_like.* name): take it away, as in a
        # venv where only the wheel is installed
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
        "import mmdet_like, mmdet_like.ops as ops\n"
        "from mmdet_like.cli import main\n"
        "print(mmdet_like.__file__)\n"
        "print(mmdet_like.get_config_path('mask_rcnn_r50_fpn_1x'))\n"
        "print(ops.backend())\n"
        "assert main(['print-config', 'faster_rcnn_r50_fpn_1x']) == 0\n"
        # a short training by config name from the installed package, on the fallback ops
        "assert main(['make-demo-dataset', 'data/demo', '--num-train', '2', '--num-val', '1'])"
        " == 0\n"
        "raise SystemExit(main(['train', 'mask_rcnn_r18_fpn_demo', '--work-dir', 'work',"
        " '--no-validate', '--cfg-options', 'total_epochs=1', 'data.imgs_per_gpu=2']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=run_env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == str(site / "mmdet_like" / "__init__.py")
    assert lines[1] == str(site / "mmdet_like" / ".mim" / "configs" / "mask_rcnn_r50_fpn_1x.py")
    assert lines[2] == "fallback"
    assert "type='FasterRCNN'" in out.stdout
    assert (tmp_path / "work" / "latest.pth").is_file()
    assert (tmp_path / "work" / "mask_rcnn_r18_fpn_demo.py").is_file()  # the config, dumped
    assert Path(mmdet_like.__file__).parent == ROOT / "mmdet_like"  # this process: the checkout
