"""Bad configs: unknown types, missing arguments, wrong or circular ``_base_`` paths,
configs that do not parse, and malformed or hostile ``--cfg-options``.

Decided: a ``type`` nothing is registered under raises :class:`RegistryError` naming the
registry, the closest names and every registered one; a missing or unknown argument raises
:class:`BuildError` naming the component and the argument. ``load_config`` follows
``_base_`` without running any config first, so a missing base, a cycle (no
RecursionError), a syntax error or a malformed ``_base_`` raises :class:`ConfigError`
naming the config, the path / cycle / line. ``--cfg-options`` values are parsed as Python
literals and never evaluated: anything else stays a string; malformed keys and options that
cannot be applied raise :class:`ConfigError` (argparse: exit 2 with the message).
"""

import argparse
import re
from pathlib import Path

import pytest

import mmdet_like.datasets  # noqa: F401 (registers the datasets)
import mmdet_like.models  # noqa: F401 (registers the detectors)
from mmdet_like.engine import ConfigError, add_cfg_options_argument, load_config
from mmdet_like.engine.config import parse_cfg_options, parse_cfg_value
from mmdet_like.registry import DATASETS, DETECTORS, BuildError, RegistryError, build_from_cfg
from tests.engine.cli_utils import call_tool

ROOT = Path(__file__).resolve().parents[2]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- types and arguments


def test_unknown_type_names_registry_close_matches_and_entries(tmp_path):
    cfg_file = write(tmp_path / "m.py", "model = dict(type='FasterRCN')\n")
    cfg = load_config(str(cfg_file))
    with pytest.raises(RegistryError) as info:
        build_from_cfg(cfg.model, DETECTORS)
    message = str(info.value)
    assert "type 'FasterRCN' is not in the DETECTORS registry" in message
    assert "Did you mean 'FasterRCNN'" in message
    registered = message.split("Registered: ", 1)[1].rstrip(".").split(", ")
    assert registered == DETECTORS.names  # every entry (other tests may register toys)
    assert {"FastRCNN", "FasterRCNN", "MaskRCNN", "RPN"} <= set(registered)


def test_unknown_nested_type_names_the_inner_registry():
    cfg = dict(type="FasterRCNN", backbone=dict(type="ResNt", depth=50), neck=None,
               rpn_head=None, roi_head=None)  # fmt: skip
    with pytest.raises(RegistryError, match=r"'ResNt' is not in the BACKBONES registry. Did "
                                            r"you mean 'ResNet'"):  # fmt: skip
        build_from_cfg(cfg, DETECTORS)


def test_missing_and_misspelt_arguments_name_component_and_argument():
    with pytest.raises(BuildError) as info:
        build_from_cfg(dict(type="CocoDataset", pipeline=[]), DATASETS)
    assert str(info.value) == (
        "DATASETS: CocoDataset is missing required argument(s) 'ann_file'; add them to its "
        "config dict."
    )
    with pytest.raises(BuildError) as info:
        build_from_cfg(dict(type="CocoDataset", ann_file="a.json", pipeline=[],
                            img_prefx="imgs/"), DATASETS)  # fmt: skip
    message = str(info.value)
    assert "CocoDataset got unexpected argument(s) 'img_prefx'" in message
    assert "(did you mean 'img_prefix'?)" in message
    with pytest.raises(BuildError, match=r"DATASETS: config has no 'type' key"):
        build_from_cfg(dict(ann_file="a.json"), DATASETS)


# ---------------------------------------------------------------- _base_


def test_missing_base_names_the_config_and_the_path(tmp_path):
    child = write(tmp_path / "configs" / "child.py", "_base_ = ['../_base_/nope.py']\na = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    message = str(info.value)
    assert message.startswith(f"{child}: its _base_ file '../_base_/nope.py' does not exist")
    assert str(tmp_path / "_base_" / "nope.py") in message and "Fix" in message


def test_missing_base_of_a_base_names_both_configs(tmp_path):
    child = write(tmp_path / "child.py", "_base_ = './mid.py'\n")
    mid = write(tmp_path / "mid.py", "_base_ = ['./ok.py', 'sub/missing.py']\n")
    write(tmp_path / "ok.py", "x = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    message = str(info.value)
    assert message.startswith(f"{mid} (a _base_ of {child}): its _base_ file 'sub/missing.py'")
    assert str(tmp_path / "sub" / "missing.py") in message


@pytest.mark.parametrize(
    "files, start, cycle",
    [
        ({"a.py": "_base_ = './a.py'\n"}, "a.py", ["a.py", "a.py"]),
        ({"a.py": "_base_ = ['./b.py']\n", "b.py": "_base_ = './a.py'\n"}, "a.py",
         ["a.py", "b.py", "a.py"]),
        ({"top.py": "_base_ = './a.py'\n", "a.py": "_base_ = ['./ok.py', 'sub/b.py']\n",
          "ok.py": "x = 1\n", "sub/b.py": "_base_ = '../c.py'\n", "c.py": "_base_ = 'a.py'\n"},
         "top.py", ["a.py", "sub/b.py", "c.py", "a.py"]),
    ],
    ids=["self", "two files", "three files below a top config"],
)  # fmt: skip
def test_base_cycle_is_named_without_recursion_error(tmp_path, files, start, cycle):
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / start))
    expected = " -> ".join(str(tmp_path / name) for name in cycle)
    assert str(info.value).startswith(f"_base_ cycle: {expected}. Fix")
    assert not isinstance(info.value.__context__, RecursionError)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("_base_ = 5\n", r"bad.py, line 1: _base_ must be a config path or a list of paths"),
        ("_base_ = ['./ok.py', None]\n", r"bad.py, line 1: _base_ must be"),
        ("x = 1\nmodel = dict(\n", r"bad.py, line 2: invalid Python \('\(' was never closed\)"),
    ],
    ids=["base int", "base with None", "syntax error"],
)
def test_config_that_cannot_be_read_names_the_file(tmp_path, text, fragment):
    write(tmp_path / "ok.py", "x = 1\n")
    child = write(tmp_path / "child.py", "_base_ = './bad.py'\n")
    write(tmp_path / "bad.py", text)
    for start in (tmp_path / "bad.py", child):  # directly or as a base
        with pytest.raises(ConfigError) as info:
            load_config(str(start))
        assert re.search(fragment, str(info.value)), str(info.value)


def test_error_while_running_a_base_names_that_base(tmp_path):
    bad = write(tmp_path / "bad.py", "model = dict(depth=DEPTH)\n")
    child = write(tmp_path / "child.py", "_base_ = './bad.py'\nx = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    assert str(info.value) == f"{bad}: cannot be loaded: NameError: name 'DEPTH' is not defined"
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    assert str(info.value).startswith(f"{bad} (a _base_ of {child}): cannot be loaded: NameError")


def test_duplicate_keys_among_bases_names_the_files(tmp_path):
    write(tmp_path / "b1.py", "x = 1\n")
    write(tmp_path / "b2.py", "x = 2\n")
    child = write(tmp_path / "child.py", "_base_ = ['./b1.py', './b2.py']\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    message = str(info.value)
    assert message.startswith(f"{child}: cannot be loaded (it and its _base_ files: ")
    assert str(tmp_path / "b2.py") in message and "Duplicate key" in message


# ---------------------------------------------------------------- --cfg-options


def hostile_values(marker):
    """Values that would create ``marker`` if they were evaluated as code."""
    return [
        f"__import__('os').system('touch {marker}')",
        f"[__import__('os').system('touch {marker}')]",
        f"exec(\"open('{marker}', 'w')\")",
        f"dict(a=open('{marker}', 'w'))",
        f"{{'a': open('{marker}', 'w')}}",
        f"(lambda: open('{marker}', 'w'))()",
        f'f\'{{open("{marker}", "w")}}\'',
        f"eval(\"open('{marker}', 'w')\"),1",
    ]


def test_cfg_options_are_literals_never_code(tmp_path):
    marker = tmp_path / "MARKER"
    cfg_file = write(tmp_path / "c.py", "optimizer = dict(lr=0.1)\ntotal_epochs = 12\n")
    for value in hostile_values(marker):
        assert parse_cfg_value(value) == value  # kept as the string it is
        cfg = load_config(str(cfg_file), [f"optimizer.lr={value}"])
        assert cfg.optimizer.lr == value
    assert not marker.exists()
    # literals are still parsed
    cfg = load_config(str(cfg_file), ["optimizer.lr=0.02", "workflow=[('train', 1)]"])
    assert cfg.optimizer.lr == 0.02 and cfg.workflow == [("train", 1)]
    # absurdly nested input is no crash either: it stays text
    assert parse_cfg_value("-" * 100_000 + "1") == "-" * 100_000 + "1"


@pytest.mark.parametrize(
    "option, fragment",
    [
        ("novalue", r"'novalue' is not of the form KEY=VALUE"),
        ("=5", r"the key '' must be dot-separated names"),
        ("optimizer..lr=1", r"the key 'optimizer..lr' must be"),
        ("optimizer. lr=1", r"the key 'optimizer. lr' must be"),
    ],
)
def test_malformed_cfg_option_keys_are_rejected(option, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_cfg_options([option])
    parser = argparse.ArgumentParser(prog="tool")
    add_cfg_options_argument(parser)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--cfg-options", "total_epochs=3", option])
    assert info.value.code == 2


def test_cfg_option_that_cannot_be_applied_names_it(tmp_path):
    cfg_file = write(tmp_path / "c.py", "total_epochs = 12\npipeline = [dict(type='A')]\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg_file), ["total_epochs.x=1"])
    assert str(info.value).startswith(f"{cfg_file}: --cfg-options total_epochs.x=1 cannot be")
    with pytest.raises(ConfigError, match=r"--cfg-options pipeline.3.type='B' cannot be applied"):
        load_config(str(cfg_file), ["pipeline.3.type=B"])


def test_print_config_tool_never_runs_option_values(tmp_path):
    """tools/print_config.py run in this process as its ``__main__`` block runs it (a value
    run as code would create the marker here just as in a subprocess)."""
    marker = tmp_path / "MARKER"
    cfg_file = write(tmp_path / "c.py", "optimizer = dict(lr=0.1)\n")
    values = hostile_values(marker)[:3]
    out = call_tool("print_config.py", cfg_file, "--cfg-options",
                    *[f"x{i}={v}" for i, v in enumerate(values)], cwd=tmp_path)  # fmt: skip
    assert out.status == 0, out.stderr
    assert not marker.exists()
    assert "system('touch" in out.stdout  # printed back as the string it was
    bad = call_tool("print_config.py", cfg_file, "--cfg-options", "a..b=1", cwd=tmp_path)
    assert bad.status == 2 and "the key 'a..b' must be" in bad.stderr
