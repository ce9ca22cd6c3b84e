"""tools/benchmark_variants.py: our configs against a reference config of ours. The child's
measurement runs in-process on a tiny config and tiny images; the parent's rounds, table,
ratios and the equal-work check run on fake child results."""

import sys

import numpy as np
import pytest
import torch

from mmdet_like.errors import run_tool
from tests.engine.cli_utils import ROOT, load_tool

C4 = "configs/mask_rcnn_r50_caffe_c4_1x.py"
CASCADE = "configs/cascade_mask_rcnn_r50_fpn_1x.py"
GN = "configs/gn/mask_rcnn_r50_fpn_gn-all_2x.py"
# the demo Mask R-CNN (half-width ResNet-18) narrower still, with fixed batch norms in the
# backbone (norm_eval) as the benchmark's configs have, and few proposals
TINY_CONFIG = f"""
_base_ = ["{ROOT}/configs/demo/mask_rcnn_r18_fpn_demo.py"]
model = dict(
    backbone=dict(base_channels=8, frozen_stages=1, norm_eval=True),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32),
        mask_roi_extractor=dict(out_channels=16),
        mask_head=dict(in_channels=16, conv_out_channels=8),
    ),
)
train_cfg = dict(
    rpn_proposal=dict(nms_pre=200, nms_post=60, max_num=60), rcnn=dict(sampler=dict(num=16))
)
test_cfg = dict(rpn=dict(nms_pre=200, nms_post=60, max_num=60), rcnn=dict(max_per_img=20))
"""


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_variants")


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny_mask_rcnn.py"
    path.write_text(TINY_CONFIG)
    return str(path)


def _tiny_samples():
    """make_inputs' format: 2 images of 64 x 96 with 2 boxes, labels and masks each."""
    rng = np.random.default_rng(0)
    boxes = np.array([[4, 6, 40, 30], [30, 20, 90, 60]], np.float32)
    samples = []
    for _ in range(2):
        masks = np.zeros((2, 64, 96), np.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
            mask[y1:y2, x1:x2] = 1
        image = rng.integers(0, 256, (64, 96, 3), np.uint8)
        samples.append(dict(image=image, boxes=boxes, labels=np.array([0, 3]), masks=masks))
    return samples


def test_child_measures_training_and_inference_in_process(tool, tiny_config, monkeypatch):
    monkeypatch.setattr(tool, "make_inputs", _tiny_samples)
    cpu = torch.device("cpu")
    train = tool.measure(tiny_config, "train", cpu, iters=2, warmup=0)
    assert len(train["times"]) == 2 and all(t > 0 for t in train["times"])
    assert train["images"] == 2 and train["image_size"] == [64, 96]
    assert train["boxes"] == [2, 2] and train["masks"] is True
    assert train["peak_mb"] > 0 and "detections" not in train
    assert "torchvision" not in train["machine"]
    infer = tool.measure(tiny_config, "infer", cpu, iters=1, warmup=0)
    assert len(infer["times"]) == 1 and len(infer["detections"]) == 2
    # score threshold 0: the config's own max_per_img (20) no longer caps the detections
    assert all(20 < n <= tool.DETECTIONS_PER_IMAGE for n in infer["detections"])


def test_models_have_random_weights_under_one_seed_and_random_norm_statistics(tool, tiny_config):
    cpu = torch.device("cpu")
    first = tool.build_variant(tiny_config, "infer", cpu)
    second = tool.build_variant(tiny_config, "infer", cpu)
    assert not first.training
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    norm = first.backbone.bn1
    assert not torch.allclose(norm.running_var, torch.ones_like(norm.running_var))
    assert not torch.allclose(norm.weight, torch.ones_like(norm.weight))
    rcnn = first.roi_head.test_cfg
    assert rcnn["score_thr"] == 0 and rcnn["max_per_img"] == tool.DETECTIONS_PER_IMAGE
    assert tool.build_variant(tiny_config, "train", cpu).training


@pytest.mark.parametrize("config", [C4, CASCADE, GN])
def test_issue_configs_get_equal_detections_and_no_pretrained_file(tool, config):
    if not (ROOT / config).exists():
        pytest.skip(f"{config} is not in the repository yet")
    cfg = tool.load_variant(tool.resolve_config(config), "infer")
    assert cfg.test_cfg.rcnn.score_thr == 0
    assert cfg.test_cfg.rcnn.max_per_img == tool.DETECTIONS_PER_IMAGE
    assert cfg.model.get("pretrained") is None
    train = tool.load_variant(tool.resolve_config(config), "train")
    assert train.test_cfg.rcnn.score_thr == 0.05  # training leaves the test config alone


def _fake_children(monkeypatch, tool, detections=None):
    """run_child replaced: the reference 2 s and 1000 MiB at best, the cascade 3 s and
    1500 MiB; ``detections``: {config file name: per-image counts} (default 100 each)."""
    calls = []
    figures = {
        "mask_rcnn_r50_fpn_1x.py": (2.0, 1000.0),
        "cascade_mask_rcnn_r50_fpn_1x.py": (3.0, 1500.0),
    }

    def fake(script, args):
        calls.append(args)
        config = args[args.index("--config") + 1]
        best, peak = figures[config.rsplit("/", 1)[1]]
        mode = args[args.index("--mode") + 1]
        earlier = [c for c in calls[:-1] if config in c and mode in c]
        slower = 1.0 if earlier else 0.0  # the second round is slower
        result = dict(times=[best + slower, best * 2 + slower, best * 3], peak_mb=peak + slower,
                      machine="cpu (test)", images=2, image_size=[800, 1216], boxes=[5, 5],
                      masks=True)  # fmt: skip
        if "infer" in args:
            result["detections"] = (detections or {}).get(config.rsplit("/", 1)[1], [100, 100])
        return result

    monkeypatch.setattr(tool, "run_child", fake)
    return calls


def test_tables_rows_ratios_and_sections(tool, monkeypatch, tmp_path):
    calls = _fake_children(monkeypatch, tool)
    out = tmp_path / "bench.md"
    out.write_text("# Benchmarks\n\nintro\n")
    argv = ["--config", CASCADE, "--config", "configs/mask_rcnn_r50_fpn_1x.py", "--rounds", "2"]
    tables = tool.main(argv + ["--iters", "3", "--warmup", "0", "--out", str(out)])
    # the reference given again is one row; each round runs the reference, then the cascade
    assert len(calls) == 2 * 2 * 2  # modes x rounds x configs
    order = [c[c.index("--config") + 1].rsplit("/", 1)[1] for c in calls[:4]]
    assert order == ["mask_rcnn_r50_fpn_1x.py", CASCADE.rsplit("/", 1)[1]] * 2
    for mode, unit, images_per_s in (("train", "s/iter", "1.00"), ("infer", "s/img", "0.50")):
        lines = tables[mode].splitlines()
        assert f"| config | {unit} (best) | {unit} (median) |" in lines[2]
        rows = lines[4:]
        assert len(rows) == 2
        reference = f"| 2.00 | 4.00 | {images_per_s} | 1000 | 1.00x | 1.00x |"
        assert rows[0] == "| `configs/mask_rcnn_r50_fpn_1x.py` " + reference
        assert rows[1].startswith(f"| `{CASCADE}` | 3.00 | 6.00 |")
        assert rows[1].endswith("| 1500 | 1.50x | 1.50x |")
        assert f"<!-- benchmark_variants cpu {mode} begin -->" in out.read_text()
    assert "[100, 100] for every config" in tables["infer"]
    assert "5 boxes and masks each" in tables["train"] and "best of 2 round(s)" in tables["train"]
    assert "intro" in out.read_text()


def test_unequal_detection_counts_stop_the_run(tool, monkeypatch, tmp_path):
    _fake_children(monkeypatch, tool, {"cascade_mask_rcnn_r50_fpn_1x.py": [100, 97]})
    out = tmp_path / "bench.md"
    with pytest.raises(tool.UnequalWorkError, match=r"unequal work: .*cascade.*\[100, 97\]"):
        tool.main(["--config", CASCADE, "--mode", "infer", "--out", str(out)])
    assert not out.exists()


def test_bad_config_path_is_one_clear_message_before_any_child(tool, monkeypatch, capsys):
    monkeypatch.setattr(tool, "run_child", lambda *a: pytest.fail("a child was started"))
    monkeypatch.setattr(sys, "argv", ["benchmark_variants.py", "--config", "configs/nope.py"])
    assert run_tool(tool.main) == 1
    err = capsys.readouterr().err
    assert "benchmark_variants.py: error: config 'configs/nope.py' does not exist" in err
    assert "Traceback" not in err


def test_help_names_the_options(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--reference", "--config", "--mode", "--rounds", "--out"):
        assert option in text
    with pytest.raises(SystemExit):
        tool.parse_args(["--iters", "0"])
