import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mmdet_like.engine import ConfigKeyWarning, load_config, parse_cfg_options
from mmdet_like.engine.config import parse_cfg_value

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def configs(tmp_path):
    (tmp_path / "base_a.py").write_text(
        "optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4)\n"
        "data = dict(imgs_per_gpu=2, workers_per_gpu=2, train=dict(type='A', ann='x'))\n"
        "total_epochs = 12\n"
    )
    (tmp_path / "base_b.py").write_text("log_level = 'INFO'\nworkflow = [('train', 1)]\n")
    (tmp_path / "child.py").write_text(
        "_base_ = ['./base_a.py', './base_b.py']\n"
        "optimizer = dict(_delete_=True, type='AdamW', lr=1e-3)\n"
        "data = dict(imgs_per_gpu=4)\n"
    )
    return tmp_path


def test_base_merge_and_delete(configs):
    cfg = load_config(str(configs / "child.py"))
    assert cfg.optimizer == {"type": "AdamW", "lr": 1e-3}  # _delete_ replaced the dict
    assert cfg.data.imgs_per_gpu == 4 and cfg.data.workers_per_gpu == 2  # merged
    assert cfg.data.train.type == "A" and cfg.total_epochs == 12 and cfg.log_level == "INFO"


def test_cfg_options_override_nested_keys_with_literals(configs):
    cfg = load_config(
        str(configs / "child.py"),
        ["data.imgs_per_gpu=8", "optimizer.lr=0.5", "workflow=[('train',1)]"],
    )
    assert cfg.data.imgs_per_gpu == 8 and cfg.optimizer.lr == 0.5
    assert cfg.workflow == [("train", 1)]


def test_cfg_values_are_literals_never_code():
    assert parse_cfg_value("4") == 4 and parse_cfg_value("1e-3") == 1e-3
    assert parse_cfg_value("[1, 2]") == [1, 2] and parse_cfg_value("None") is None
    assert parse_cfg_value("dict(type='X', a=[1])") == {"type": "X", "a": [1]}
    assert parse_cfg_value("a,b") == ["a", "b"] and parse_cfg_value("SGD") == "SGD"
    hostile = "__import__('os').system('touch /tmp/pwned')"
    assert parse_cfg_value(hostile) == hostile  # kept as a string, not run
    assert parse_cfg_options(["a.b=1", "c=x=y"]) == {"a.b": 1, "c": "x=y"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_cfg_options(["novalue"])


def test_unknown_top_level_key_warns_with_closest_key(configs):
    (configs / "typo.py").write_text("_base_ = ['./base_a.py']\ntotal_epoch = 3\n_private = 1\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_config(str(configs / "typo.py"))
    messages = [str(w.message) for w in caught if issubclass(w.category, ConfigKeyWarning)]
    assert messages == [
        "typo.py: top-level key 'total_epoch' is not read by mmdet_like; did "
        "you mean 'total_epochs'?"
    ]


def test_custom_imports_are_imported(configs):
    (configs / "imports.py").write_text("custom_imports = dict(imports=['tests.engine.toy'])\n")
    load_config(str(configs / "imports.py"))
    assert "tests.engine.toy" in sys.modules
    (configs / "bad.py").write_text("custom_imports = dict(imports=['no_such_module_xyz'])\n")
    with pytest.raises(ImportError, match="no_such_module_xyz.*PYTHONPATH"):
        load_config(str(configs / "bad.py"))


def test_print_config_tool(configs):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "print_config.py"),
            str(configs / "child.py"),
            "--cfg-options",
            "total_epochs=24",
            "data.train.ann=y",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "total_epochs = 24" in out and "type='AdamW'" in out and "ann='y'" in out
