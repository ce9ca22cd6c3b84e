"""tools/model_converters/publish_model.py and tools/analysis_tools/ (get_flops,
optimize_anchors, browse_dataset), run on data and models made here.

The tools run in this process as their ``__main__`` blocks run them (``run_tool_here``);
each script's error case runs once in a subprocess, where the process (one error line, exit
status 1, no traceback) is the point."""

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.engine.cli_utils import ROOT, load_tool, run_python, run_tool_here, tool_module

DEMO_CONFIG = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"
DEMO_CLASSES = ["circle", "rectangle", "triangle", "star"]


def _run(args, cwd, expect_rc=0):
    """``python ARGS`` in ``cwd``, a tool run in this process; its output."""
    return run_tool_here(args, cwd, expect_rc)


def _one_error_line(args, cwd, expected):
    """The script as a process: exit status 1, the error ``expected`` on one line, no
    traceback (``run_python``)."""
    out = run_python(args, cwd, expect_rc=1)
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert len(errors) == 1 and expected in errors[0], out
    assert errors[0].startswith(f"{Path(args[0]).name}: error: "), out
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A folder with a tiny demo dataset in data/demo (the demo config's relative paths)."""
    cwd = tmp_path_factory.mktemp("demo")
    load_tool("make_demo_dataset").make_dataset(
        str(cwd / "data" / "demo"), num_train=3, num_val=2, seed=5
    )
    return cwd


# ------------------------------------------------------------------ publish_model


def _trained_checkpoint(path):
    """A checkpoint as the runner writes it: weights after an optimizer step, the optimizer's
    state and the training history in meta."""
    from mmdet_like.apis import build_detector
    from mmdet_like.engine import load_config
    from mmdet_like.engine.checkpoint import get_rng_states, save_checkpoint

    cfg = load_config(str(DEMO_CONFIG))
    torch.manual_seed(0)
    model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.ones_like(p) * 1e-3
    optimizer.step()
    meta = dict(
        config=cfg.pretty_text, seed=0, mmdet_like_version="0", CLASSES=DEMO_CLASSES,
        epoch=1, iter=3, inner_iter=0, rng=get_rng_states(), hook_states={"x": {"a": 1}},
    )  # fmt: skip
    save_checkpoint(str(path), model, optimizer=optimizer, meta=meta)
    return model


def test_publish_model_drops_training_state_and_tools_accept_it(demo):
    model = _trained_checkpoint(demo / "work" / "latest.pth")
    out = _run(
        [ROOT / "tools/model_converters/publish_model.py", "work/latest.pth", "pub/model.pth"],
        demo,
    )
    path = demo / out.strip().splitlines()[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"model-{digest[:8]}.pth"
    assert sorted(p.name for p in (demo / "pub").iterdir()) == [path.name]  # no temp files
    published = torch.load(path, map_location="cpu", weights_only=True)
    assert "optimizer" not in published
    meta = published["meta"]
    assert meta["CLASSES"] == DEMO_CLASSES and "config" in meta
    assert not {"rng", "hook_states", "inner_iter"} & set(meta)
    expected = model.state_dict()
    assert published["state_dict"].keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(published["state_dict"][name], value), name
    assert path.stat().st_size < (demo / "work" / "latest.pth").stat().st_size

    out = run_tool_here(
        [ROOT / "tools" / "test.py", DEMO_CONFIG, path, "--out", "pub/results.pkl",
         "--cfg-options", "data.workers_per_gpu=0"],
        demo,
    )  # fmt: skip
    assert "results of 2 images written" in out, out


def test_publish_model_errors(demo, tmp_path):
    tool = "tools/model_converters/publish_model.py"
    out = _one_error_line([ROOT / tool, tmp_path / "missing.pth", tmp_path / "o.pth"], demo,
                          "does not exist")  # fmt: skip
    assert "does not exist" in out
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pth")
    out = _run([ROOT / tool, tmp_path / "foreign.pth", tmp_path / "o.pth"], demo, expect_rc=1)
    assert "no 'state_dict'" in out


# ------------------------------------------------------------------ get_flops

TINY_CONFIG = """
_base_ = ["{demo}"]
model = dict(backbone=dict(base_channels=8), neck=dict(in_channels=[8, 16, 32, 64]))
"""


def test_get_flops_counts_convs_params_and_roi_align(tmp_path):
    config = tmp_path / "tiny.py"
    config.write_text(TINY_CONFIG.format(demo=DEMO_CONFIG))
    tool = tool_module("analysis_tools/get_flops.py")
    cfg = tool.load_tool_config(str(config))
    model = tool.build_model(cfg)
    groups, total, by_op = tool.count(model, 64, 96)

    # the stem: 7x7 stride-2 conv, 3 -> 8 channels, 64x96 -> 32x48
    stem = model.backbone.conv1
    assert (stem.in_channels, stem.out_channels, stem.kernel_size) == (3, 8, (7, 7))
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        stem(torch.zeros(1, 3, 64, 96))
    assert counter.get_total_flops() == 2 * 3 * 8 * 7 * 7 * 32 * 48
    for name in ("backbone", "neck", "rpn_head", "roi_head"):
        assert groups[name][0] > 0, name
        params = sum(p.numel() for p in getattr(model, name).parameters())
        assert groups[name][1] == params
    roi_align = [n for op, n in by_op.items() if "roi_align" in op]
    assert roi_align and roi_align[0] > 0
    extractors = ("roi_head.bbox_roi_extractor", "roi_head.mask_roi_extractor")
    assert all(groups[name][0] > 0 for name in extractors)
    assert sum(groups[name][0] for name in extractors) >= roi_align[0]
    assert any("nms" in op for op in by_op)

    out = _run([ROOT / "tools/analysis_tools/get_flops.py", config, "--shape", 64, 96], tmp_path)
    assert f"Total params: {sum(p.numel() for p in model.parameters())}" in out
    backbone_line = re.search(r"^backbone\s+(\d+)\s+(\d+)", out, re.M)
    assert int(backbone_line.group(1)) == groups["backbone"][0]
    assert re.search(r"mmdet_like\.roi_align\s+[1-9]\d*", out), out
    # the heads' counts depend on the proposals (random weights); the total is printed
    assert int(re.search(r"Total FLOPs: (\d+)", out).group(1)) > groups["backbone"][0]
    out = _run([ROOT / "tools/analysis_tools/get_flops.py", tmp_path / "no.py"], tmp_path, 1)
    assert "does not exist" in out
    _one_error_line([ROOT / "tools/analysis_tools/get_flops.py", tmp_path / "no.py"], tmp_path,
                    "does not exist")  # fmt: skip


def test_roi_align_formula():
    tool = tool_module("analysis_tools/get_flops.py")
    rois = torch.tensor([[0, 0, 0, 16, 8], [0, 0, 0, 3, 3]], dtype=torch.float32)
    # sampling_ratio 2: 4 samples a bin; 0: ceil(h/ph) * ceil(w/pw) per RoI
    assert tool.roi_align_flops(rois, 4, 2, 2, 1.0, 2) == 8 * 4 * 2 * 2 * 2 * 4
    assert tool.roi_align_flops(rois, 4, 2, 2, 1.0, 0) == 8 * 4 * 2 * 2 * (4 * 8 + 2 * 2)


# ------------------------------------------------------------------ optimize_anchors

SMALL, LARGE = (10, 10), (40, 20)  # (w, h) in the 64x64 files; the pipeline doubles them


def _two_cluster_dataset(root):
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(root / "img" / f"{i}.png"), np.full((64, 64, 3), 100, np.uint8))
        images.append(dict(id=i + 1, file_name=f"{i}.png", width=64, height=64))
        for j, (w, h) in enumerate((SMALL, LARGE, SMALL, LARGE)):
            w, h = w + int(rng.integers(-1, 2)), h + int(rng.integers(-1, 2))
            x, y = 2 + 14 * (j % 2), 2 + 30 * (j // 2)
            anns.append(dict(
                id=len(anns) + 1, image_id=i + 1, category_id=1, bbox=[x, y, w, h],
                area=w * h, iscrowd=0,
                segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]],
            ))  # fmt: skip
    coco = dict(images=images, annotations=anns, categories=[dict(id=1, name="thing")])
    (root / "train.json").write_text(json.dumps(coco))


ANCHOR_CONFIG = """
_base_ = ["{demo}"]
model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[8])),
    roi_head=dict(bbox_head=dict(num_classes=1), mask_head=dict(num_classes=1)),
)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(128, 128), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", mean=[0, 0, 0], std=[1, 1, 1], to_rgb=True),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
data = dict(train=dict(
    ann_file="{root}/train.json", img_prefix="{root}/img/", classes=["thing"],
    pipeline=train_pipeline,
))
"""


def test_optimize_anchors_covers_both_clusters(tmp_path):
    (tmp_path / "img").mkdir()
    _two_cluster_dataset(tmp_path)
    config = tmp_path / "anchors.py"
    config.write_text(ANCHOR_CONFIG.format(demo=DEMO_CONFIG, root=tmp_path))
    out = _run([ROOT / "tools/analysis_tools/optimize_anchors.py", config, "--iters", 50], tmp_path)
    before = float(re.search(r"IoU before.*: ([\d.]+)", out).group(1))
    after = float(re.search(r"IoU after.*: ([\d.]+)", out).group(1))
    assert after >= before and after > 0.8, out
    text = out[out.index("model = dict(") :]
    namespace = {}
    exec(text, {"dict": dict}, namespace)  # the printed lines are config syntax
    generator = namespace["model"]["rpn_head"]["anchor_generator"]
    tool = tool_module("analysis_tools/optimize_anchors.py")
    sizes = np.array([s for level in generator["sizes"] for s in level])
    anchors = tool.grid_anchors(sizes, np.array(generator["ratios"]))
    for w, h in (SMALL, LARGE):  # doubled by Resize (64 -> 128)
        best = tool.wh_iou(np.array([[2.0 * w, 2.0 * h]]), anchors).max()
        assert best > 0.85, (w, h, anchors)

    # pasted after the config, the lines build a model with the fitted anchors
    pasted = tmp_path / "pasted.py"
    pasted.write_text(f'_base_ = ["{config}"]\n{text}')
    from mmdet_like.apis import build_detector
    from mmdet_like.engine import load_config

    cfg = load_config(str(pasted))
    model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    shapes = torch.cat([a[:, 2:] - a[:, :2] for a in model.rpn_head.anchor_generator.base_anchors])
    assert np.allclose(np.sort(shapes.numpy(), 0), np.sort(anchors, 0), rtol=1e-3, atol=0.1)

    out = _run(
        [ROOT / "tools/analysis_tools/optimize_anchors.py", config, "--num-anchors", 7],
        tmp_path, expect_rc=1,
    )  # fmt: skip
    assert "multiple of levels x ratios" in out
    _one_error_line([ROOT / "tools/analysis_tools/optimize_anchors.py", config, "--num-anchors",
                     7], tmp_path, "multiple of levels x ratios")  # fmt: skip


# ------------------------------------------------------------------ browse_dataset


def test_browse_dataset_draws_the_training_samples(demo, monkeypatch):
    out = _run(
        [ROOT / "tools/analysis_tools/browse_dataset.py", DEMO_CONFIG, "--output-dir", "browse",
         "--not-show"],
        demo,
    )  # fmt: skip
    assert "3 images written" in out
    files = sorted((demo / "browse").glob("*.png"))
    assert len(files) == 3
    for path in files:
        img = cv2.imread(str(path))
        assert img.shape == (128, 128, 3) and img.std() > 5

    tool = tool_module("analysis_tools/browse_dataset.py")
    cfg = tool.load_tool_config(str(DEMO_CONFIG))
    monkeypatch.chdir(demo)  # the config's data paths are relative
    dataset = tool.build_train_dataset(cfg, str(DEMO_CONFIG))
    sample = dataset[0]
    plain = tool.denormalize(sample["img"], sample["data_samples"].metainfo["img_norm_cfg"])
    drawn = tool.draw_sample(sample, dataset.CLASSES)
    changed = (plain != drawn).any(2)
    x1, y1, x2, y2 = (int(round(v)) for v in sample["data_samples"].gt_instances.bboxes[0].tolist())
    assert changed[y1, x1:x2].mean() > 0.9  # the box's top edge is drawn
    assert changed.mean() < 0.9
    out = _run(
        [ROOT / "tools/analysis_tools/browse_dataset.py", DEMO_CONFIG, "--not-show"],
        demo, expect_rc=1,
    )  # fmt: skip
    assert "nothing to do" in out
    _one_error_line([ROOT / "tools/analysis_tools/browse_dataset.py", DEMO_CONFIG, "--not-show"],
                    demo, "nothing to do")  # fmt: skip
