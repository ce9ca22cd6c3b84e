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


@pytest.fixture
def rooted_configs(tmp_path):
    """A base building its paths from ``data_root`` (a wrapped dataset, a list, a path
    outside the root, a sibling folder of the root) and a child that sets only
    ``data_root`` and one path of its own."""
    (tmp_path / "base.py").write_text(
        "data_root = 'data/coco/'\n"
        "data = dict(\n"
        "    imgs_per_gpu=2,\n"
        "    train=dict(type='RepeatDataset', times=3, dataset=dict(type='CocoDataset',\n"
        "        ann_file=data_root + 'annotations/train.json',\n"
        "        img_prefix=data_root + 'train2017/')),\n"
        "    val=dict(type='CocoDataset', ann_file=data_root + 'annotations/val.json',\n"
        "        img_prefix=data_root + 'val2017/',\n"
        "        proposal_file=data_root + 'proposals/val.pkl'),\n"
        "    test=dict(type='ConcatDataset', datasets=[dict(type='CocoDataset',\n"
        "        ann_file=data_root + 'annotations/a.json', img_prefix='elsewhere/'),\n"
        "        dict(type='CocoDataset', ann_file='data/coco2/b.json', img_prefix='')]),\n"
        ")\n"
    )
    (tmp_path / "child.py").write_text(
        "_base_ = ['./base.py']\n"
        "data_root = 'data/mine'\n"  # no trailing slash: the paths still get one
        "data = dict(val=dict(ann_file='data/coco/annotations/val.json'))\n"  # its own: kept
    )
    return tmp_path


def test_child_data_root_rederives_the_paths_it_inherits(rooted_configs):
    from mmdet_like.apis.config_check import check_config
    from mmdet_like.engine.config import load_notes

    cfg = load_config(str(rooted_configs / "child.py"))
    data = cfg.data
    assert data.train.type == "RepeatDataset" and data.train.times == 3
    assert data.train.dataset.ann_file == "data/mine/annotations/train.json"
    assert data.train.dataset.img_prefix == "data/mine/train2017/"
    assert data.val.ann_file == "data/coco/annotations/val.json"  # set by the child: kept
    assert data.val.img_prefix == "data/mine/val2017/"
    assert data.val.proposal_file == "data/mine/proposals/val.pkl"
    first, second = data.test.datasets
    assert first.ann_file == "data/mine/annotations/a.json" and first.img_prefix == "elsewhere/"
    assert second.ann_file == "data/coco2/b.json" and second.img_prefix == ""  # not under it
    assert cfg.data_root == "data/mine" and data.imgs_per_gpu == 2
    moved = (
        "data.train.dataset.ann_file, data.train.dataset.img_prefix, data.val.img_prefix, "
        "data.val.proposal_file, data.test.datasets[0].ann_file"
    )
    note = (
        "data_root 'data/mine' replaces the base's 'data/coco/': the inherited paths under it "
        f"moved to 'data/mine' ({moved}); paths the config sets itself are kept"
    )
    assert load_notes(cfg) == [note]
    assert check_config(cfg, "child.py") == [note]  # logged by train.py / test.py
    assert "_load_notes" not in cfg.pretty_text  # a note, not a config key

    # the base itself and a child with the base's root: as they are; a grandchild that
    # keeps the child's root: the child's paths, with its note
    (rooted_configs / "grandchild.py").write_text("_base_ = ['./child.py']\nseed = 0\n")
    (rooted_configs / "same.py").write_text("_base_ = ['./base.py']\ndata_root = 'data/coco/'\n")
    cases = (("base", "data/coco/", []), ("same", "data/coco/", []),
             ("grandchild", "data/mine/", [note]))  # fmt: skip
    for name, root, notes in cases:
        cfg = load_config(str(rooted_configs / f"{name}.py"))
        assert cfg.data.train.dataset.ann_file == root + "annotations/train.json"
        assert load_notes(cfg) == notes
    # a middle config that moves the root, its child that moves it again
    (rooted_configs / "again.py").write_text("_base_ = ['./child.py']\ndata_root = '/srv/d/'\n")
    cfg = load_config(str(rooted_configs / "again.py"))
    assert cfg.data.train.dataset.img_prefix == "/srv/d/train2017/"
    assert cfg.data.val.ann_file == "data/coco/annotations/val.json"  # not under data/mine
    assert len(load_notes(cfg)) == 2


def test_data_root_alone_points_an_inherited_config_at_other_data(tmp_path, monkeypatch):
    # the fix the dataset's "image folder does not exist" message suggests
    from mmdet_like.datasets import build_dataset
    from tests.engine.cli_utils import load_tool

    load_tool("make_demo_dataset").make_dataset(str(tmp_path / "shapes"), num_train=2,
                                                num_val=1, seed=0)  # fmt: skip
    monkeypatch.chdir(tmp_path)  # no data/demo here: the demo config's own paths fail
    demo = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"
    with pytest.raises(Exception, match="data_root alone: the paths follow it"):
        build_dataset(load_config(str(demo)).data.train)
    (tmp_path / "mine.py").write_text(f"_base_ = [{str(demo)!r}]\ndata_root = 'shapes/'\n")
    dataset = build_dataset(load_config(str(tmp_path / "mine.py")).data.train)
    assert len(dataset) == 2 and dataset.img_prefix == "shapes/train/"
