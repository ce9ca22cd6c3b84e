"""tools/make_demo_dataset.py, tools/train.py -> tools/test.py (one process and two gloo
processes through tools/dist_test.sh), single_gpu_test and fuse_conv_bn, on CPU. Each script
runs once in its own process (the fixtures, dist_test.sh, demo_pictures); the other runs of
train.py and test.py run in this process as their ``__main__`` blocks run them
(``run_tool_here``)."""

import json
import pickle
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from torch import nn

from mmdet_like.visualization import draw_result
from tests.engine.cli_utils import PYTHON, ROOT, env, finish, free_port, load_tool, run_tool_here

DEMO_CONFIG = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"
NUM_VAL = 5  # odd: two ranks get a padded share
SHOW_OPTIONS = {"thickness": 2, "font_scale": 0.4, "palette": "tab20"}  # single_results's


def _run(args, cwd, timeout=120, script=None):
    cmd = [*script] if script else [PYTHON]
    proc = subprocess.Popen(
        [*cmd, *map(str, args)],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    rc, out = finish(proc, timeout=timeout)
    assert rc == 0, out
    return out


def _test_tool(cwd, *args):
    return _run([ROOT / "tools" / "test.py", DEMO_CONFIG, "work/latest.pth", *args], cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A demo dataset (6 train / 5 val images) in ``cwd/data/demo`` and a Mask R-CNN trained
    one epoch on it in ``cwd/work`` (run from ``cwd``, as the config's paths are relative)."""
    cwd = tmp_path_factory.mktemp("demo")
    out = _run(
        [ROOT / "tools" / "make_demo_dataset.py", "data/demo", "--num-train", 6, "--num-val",
         NUM_VAL, "--seed", 3],
        cwd,
    )  # fmt: skip
    assert f"val: {NUM_VAL} images" in out
    out = _run(
        [ROOT / "tools" / "train.py", DEMO_CONFIG, "--work-dir", "work", "--no-validate",
         "--cfg-options", "total_epochs=1", "data.imgs_per_gpu=2", "data.workers_per_gpu=0",
         "log_config.interval=1", "lr_config.warmup_iters=2"],
        cwd,
    )  # fmt: skip
    assert "Epoch [1][3/3]" in out, out
    assert (cwd / "work" / "latest.pth").is_file()
    return cwd


@pytest.fixture(scope="module")
def single_results(trained):
    """tools/test.py --eval bbox segm --out --show-dir (drawn with the options of
    :data:`SHOW_OPTIONS`): (output, results, show dir)."""
    out = _test_tool(
        trained,
        "--eval", "bbox", "segm", "--out", "out/results.pkl", "--show-dir", "out/show",
        "--show-score-thr", "0.0", "--thickness", "2", "--font-scale", "0.4", "--palette",
        "tab20", "--cfg-options", "data.workers_per_gpu=0",
    )  # fmt: skip
    with open(trained / "out" / "results.pkl", "rb") as f:
        results = pickle.load(f)
    return out, results, trained / "out" / "show"


def test_make_demo_dataset_is_deterministic_and_annotates_visible_parts(tmp_path):
    tool = load_tool("make_demo_dataset")
    first = tool.make_dataset(str(tmp_path / "a"), num_train=8, num_val=3, seed=7)
    tool.make_dataset(str(tmp_path / "b"), num_train=8, num_val=3, seed=7)
    tool.make_dataset(str(tmp_path / "c"), num_train=8, num_val=3, seed=8)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    assert files_a == files_b and len(files_a) == 8 + 3 + 2
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    other = (tmp_path / "c" / "annotations" / "instances_train.json").read_bytes()
    assert other != (tmp_path / "a" / "annotations" / "instances_train.json").read_bytes()

    coco = json.loads(Path(first["train"]).read_text())
    assert [c["name"] for c in coco["categories"]] == ["circle", "rectangle", "triangle", "star"]
    assert len(coco["annotations"]) >= 8
    labels_seen = set()
    for img in coco["images"]:
        pixels = cv2.imread(str(tmp_path / "a" / "train" / img["file_name"]))
        assert pixels.shape == (128, 128, 3) and (img["width"], img["height"]) == (128, 128)
        masks = []
        for ann in (a for a in coco["annotations"] if a["image_id"] == img["id"]):
            labels_seen.add(ann["category_id"])
            mask = mask_utils.decode(ann["segmentation"]).astype(bool)
            ys, xs = np.nonzero(mask)
            assert ann["area"] == mask.sum() >= 30
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w - 1, y + h - 1] == [xs.min(), ys.min(), xs.max(), ys.max()]
            masks.append(mask)
        # occluded parts are removed: visible regions of one image never overlap
        if len(masks) > 1:
            assert np.stack(masks).sum(0).max() == 1, img
    assert len(labels_seen) >= 3


def test_make_demo_dataset_large_objects_has_the_advertised_sizes(tmp_path):
    """``--large-objects``: 256-320 px images of both orientations, 1-3 instances each, every
    instance's mask and box 30-90% of the shorter side; the same seed gives the same data."""
    tool = load_tool("make_demo_dataset")
    first = tool.make_dataset(str(tmp_path / "a"), 12, 2, seed=3, large_objects=True)
    tool.make_dataset(str(tmp_path / "b"), 12, 2, seed=3, large_objects=True)
    for split in ("train", "val"):
        a_json = Path(first[split]).read_text()
        assert a_json == (tmp_path / "b" / "annotations" / f"instances_{split}.json").read_text()
    coco = json.loads(Path(first["train"]).read_text())
    orientations, counts = set(), []
    for img in coco["images"]:
        width, height = img["width"], img["height"]
        pixels = cv2.imread(str(tmp_path / "a" / "train" / img["file_name"]))
        assert pixels.shape == (height, width, 3)
        assert 256 <= max(width, height) <= 320 and min(width, height) >= 0.6 * 256 - 1
        orientations.add(width > height)
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        counts.append(len(anns))
        masks = []
        for ann in anns:
            mask = mask_utils.decode(ann["segmentation"]).astype(bool)
            assert mask.shape == (height, width)
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w - 1, y + h - 1] == [xs.min(), ys.min(), xs.max(), ys.max()]
            assert ann["area"] == mask.sum()
            short = min(width, height)
            assert round(0.3 * short) <= max(w, h) <= round(0.9 * short), (ann, width, height)
            masks.append(mask)
        if len(masks) > 1:
            assert np.stack(masks).sum(0).max() == 1, img
    assert orientations == {True, False}
    assert min(counts) >= 1 and max(counts) <= 3 and len(set(counts)) >= 2, counts


def test_make_demo_dataset_single_class_keeps_the_instances_in_one_class(tmp_path):
    """``--single-class``: the same images and instances as without it, all of class 1."""
    tool = load_tool("make_demo_dataset")
    many = tool.make_dataset(str(tmp_path / "a"), 4, 1, seed=3, keypoints=True,
                             large_objects=True)  # fmt: skip
    one = tool.make_dataset(str(tmp_path / "b"), 4, 1, seed=3, keypoints=True,
                            large_objects=True, single_class=True)  # fmt: skip
    for key in ("train", "val", "train_keypoints"):
        a, b = (json.loads(Path(files[key]).read_text()) for files in (many, one))
        assert b["images"] == a["images"] and len(b["annotations"]) == len(a["annotations"])
        assert {c["id"] for c in a["categories"]} == {1, 2, 3, 4}
        assert [(c["id"], c["name"]) for c in b["categories"]] == [(1, "shape")]
        if key.endswith("keypoints"):
            assert b["categories"][0]["keypoints"] == a["categories"][0]["keypoints"]
        for x, y in zip(a["annotations"], b["annotations"], strict=True):
            assert y == dict(x, category_id=1)
    with pytest.raises(SystemExit, match="--single-class is for the COCO format"):
        tool.main([str(tmp_path / "c"), "--format", "labelme", "--single-class"])


def test_make_demo_dataset_labelme_folder_converts_to_the_same_instances(tmp_path):
    """``--format labelme`` (docs/own_dataset.md's starting point): through labelme2coco.py,
    the same images and instances (class, box within a pixel) as the COCO files."""
    tool = load_tool("make_demo_dataset")
    args = ["--format", "labelme", "--num-train", 5, "--num-val", 1]
    out = run_tool_here([ROOT / "tools" / "make_demo_dataset.py", tmp_path / "labelme", *args],
                        tmp_path)  # fmt: skip
    assert "6 images with LabelMe json" in out
    coco, _ = tool.make_split(str(tmp_path / "coco"), "train", 6, seed=0)
    run_tool_here([ROOT / "tools" / "dataset_converters" / "labelme2coco.py", tmp_path / "labelme",
                   tmp_path / "converted.json", "--classes", *tool.CLASSES], tmp_path)  # fmt: skip
    converted = json.loads((tmp_path / "converted.json").read_text())
    names = {c["id"]: c["name"] for c in converted["categories"]}
    assert [names[i] for i in sorted(names)] == list(tool.CLASSES)

    def per_image(data, name_of_image):
        rows = {}
        for ann in data["annotations"]:
            rows.setdefault(name_of_image[ann["image_id"]], []).append(
                (ann["category_id"], np.asarray(ann["bbox"], dtype=float))
            )
        return {k: sorted(v, key=lambda r: (r[0], *r[1])) for k, v in rows.items()}

    want = per_image(coco, {i["id"]: i["file_name"] for i in coco["images"]})
    got = per_image(converted, {i["id"]: Path(i["file_name"]).name for i in converted["images"]})
    assert sorted(got) == sorted(want) and sum(map(len, want.values())) >= 6
    exact = total = 0
    for name, rows in want.items():
        assert [r[0] for r in got[name]] == [r[0] for r in rows], name
        for (_, box), (_, wanted) in zip(got[name], rows):
            # the polygon runs through the outer pixels' centres: its box is a pixel smaller;
            # parts one pixel thin have no polygon, so a box may be smaller still
            x1, y1, w, h = box
            wx1, wy1, ww, wh = wanted
            assert x1 >= wx1 and y1 >= wy1 and x1 + w <= wx1 + ww - 1 and y1 + h <= wy1 + wh - 1
            assert w * h >= 0.7 * (ww - 1) * (wh - 1), (name, box, wanted)
            exact += bool(np.allclose(box, [wx1, wy1, ww - 1, wh - 1], atol=0.01))
            total += 1
    assert exact >= 0.8 * total, (exact, total)
    assert any(ann["segmentation"] for ann in converted["annotations"])


def test_fuse_conv_bn_keeps_outputs():
    from mmdet_like.models.backbones import ResNet
    from mmdet_like.models.layers.norm import FrozenBatchNorm2d
    from mmdet_like.models.utils import fuse_conv_bn

    torch.manual_seed(0)
    backbone = ResNet(depth=18)
    head = nn.Sequential(
        nn.Conv2d(512, 8, 3, padding=1, bias=True), FrozenBatchNorm2d(8), nn.ReLU()
    )
    model = nn.Sequential(backbone, nn.Sequential())  # outputs of every stage
    for module in [*backbone.modules(), *head.modules()]:
        if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    head.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = [o.clone() for o in backbone(x)]
        before_head = head(before[-1])
        fuse_conv_bn(model)
        fuse_conv_bn(head)
        after = backbone(x)
        after_head = head(after[-1])
    norms = [m for m in [*model.modules(), *head.modules()]
             if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]  # fmt: skip
    assert norms == []
    assert isinstance(backbone.bn1, nn.Identity) and isinstance(head[1], nn.Identity)
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after_head, before_head, rtol=1e-4, atol=1e-4)


def test_test_tool_evaluates_pickles_and_draws(trained, single_results):
    out, results, show_dir = single_results
    metrics = dict(re.findall(r"^(\w+_mAP\w*): (-?[\d.]+)$", out, flags=re.M))
    for name in ("bbox_mAP", "bbox_mAP_50", "segm_mAP", "segm_mAP_50"):
        assert name in metrics, out
        assert -1.0 <= float(metrics[name]) <= 1.0
    assert "Average Precision" in out  # the COCO summary table

    assert len(results) == NUM_VAL
    num_dets = 0
    for bbox_results, segm_results in results:
        assert len(bbox_results) == len(segm_results) == 4
        for boxes, masks in zip(bbox_results, segm_results, strict=True):
            assert boxes.dtype == np.float32 and boxes.shape[1] == 5
            assert len(masks) == len(boxes)
            for mask in masks:
                assert mask["size"] == [128, 128] and isinstance(mask["counts"], bytes)
            num_dets += len(boxes)

    coco = json.loads((trained / "data/demo/annotations/instances_val.json").read_text())
    classes = [c["name"] for c in coco["categories"]]
    drawn_changed = 0
    for img, result in zip(coco["images"], results, strict=True):
        drawn = cv2.imread(str(show_dir / img["file_name"]))
        source = cv2.imread(str(trained / "data/demo/val" / img["file_name"]))
        assert drawn is not None and drawn.shape == source.shape
        drawn_changed += int(not np.array_equal(drawn, source))
        # the picture is the API's drawing, with the tool's options, of the very detections
        # the tool wrote to results.pkl (one inference: the same numbers)
        expected = draw_result(source, result, classes, 0.0, **SHOW_OPTIONS)
        np.testing.assert_array_equal(drawn, expected, err_msg=img["file_name"])
    assert drawn_changed == sum(any(len(b) for b in bbox_results) for bbox_results, _ in results), (
        "exactly the images with detections have something drawn on them"
    )
    assert (num_dets > 0) == (drawn_changed > 0)


def test_a_pipeline_of_data_samples_tests_to_the_same_results(trained, single_results):
    """The same checkpoint tested through a pipeline that ends in ``PackDetInputs`` (the
    detector predicts data samples, ``results.pkl`` and the metrics get per-class lists at
    the edge) gives the same results file and metrics as through ``Collect``."""
    config = trained / "packed.py"
    config.write_text(
        f"_base_ = ['{DEMO_CONFIG}']\n"
        "img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], "
        "to_rgb=True)\n"
        "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', "
        "img_scale=(128, 128), flip=False, transforms=[dict(type='Resize', keep_ratio=True), "
        "dict(type='RandomFlip'), dict(type='Normalize', **img_norm_cfg), "
        "dict(type='Pad', size_divisor=32), dict(type='PackDetInputs')])]\n"
        "data = dict(test=dict(pipeline=test_pipeline))\n"
    )
    out = run_tool_here(
        [ROOT / "tools" / "test.py", config, "work/latest.pth", "--eval", "bbox", "segm",
         "--out", "out/packed.pkl", "--cfg-options", "data.workers_per_gpu=0"],
        trained,
    )  # fmt: skip
    metrics = dict(re.findall(r"^(\w+_mAP\w*): (-?[\d.]+)$", out, flags=re.M))
    expected = dict(re.findall(r"^(\w+_mAP\w*): (-?[\d.]+)$", single_results[0], flags=re.M))
    assert metrics == expected and metrics
    with open(trained / "out" / "packed.pkl", "rb") as f:
        packed = pickle.load(f)
    _assert_same_results(packed, single_results[1], atol=0)


def test_training_on_data_samples_logs_the_losses_of_training_on_lists(trained):
    """tools/train.py with a train pipeline that ends in ``PackDetInputs``: the runner hands
    the data samples to the detector, and every logged loss equals the run through
    ``Collect`` (same seed, same data)."""
    config = trained / "packed_train.py"
    config.write_text(
        f"_base_ = ['{DEMO_CONFIG}']\n"
        "img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], "
        "to_rgb=True)\n"
        "train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', "
        "with_bbox=True, with_mask=True), dict(type='Resize', img_scale=(128, 128), "
        "keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.5), "
        "dict(type='Normalize', **img_norm_cfg), dict(type='Pad', size_divisor=32), "
        "dict(type='PackDetInputs')]\n"
        "data = dict(train=dict(pipeline=train_pipeline))\n"
    )
    args = [
        "--no-validate", "--cfg-options", "total_epochs=1", "data.imgs_per_gpu=2",
        "data.workers_per_gpu=0", "log_config.interval=1", "lr_config.warmup_iters=2",
    ]  # fmt: skip
    runs = {}
    for name, cfg in (("lists", DEMO_CONFIG), ("samples", config)):
        out = run_tool_here(
            [ROOT / "tools" / "train.py", cfg, "--work-dir", f"work_{name}", *args], trained
        )
        runs[name] = re.findall(r"Epoch \[1\]\[\d/3\].*?(loss_rpn_cls: .*)$", out, flags=re.M)
    assert len(runs["lists"]) == 3 and runs["samples"] == runs["lists"]


def test_test_tool_format_only_writes_coco_json(trained, single_results):
    _, results, _ = single_results
    out = run_tool_here(
        [ROOT / "tools" / "test.py", DEMO_CONFIG, "work/latest.pth", "--format-only",
         "--eval-options", "jsonfile_prefix=out/json/demo", "--cfg-options",
         "data.workers_per_gpu=0"],
        trained,
    )  # fmt: skip
    assert "bbox_mAP" not in out
    bbox_json = json.loads((trained / "out/json/demo.bbox.json").read_text())
    segm_json = json.loads((trained / "out/json/demo.segm.json").read_text())
    num_dets = sum(len(b) for bbox_results, _ in results for b in bbox_results)
    assert len(bbox_json) == len(segm_json) == num_dets
    for item in segm_json:
        assert set(item) == {"image_id", "bbox", "score", "category_id", "segmentation"}
        assert 1 <= item["image_id"] <= NUM_VAL and 1 <= item["category_id"] <= 4
        assert isinstance(item["segmentation"]["counts"], str)


def _assert_same_results(actual, expected, atol):
    assert len(actual) == len(expected)
    for (boxes_a, masks_a), (boxes_e, masks_e) in zip(actual, expected, strict=True):
        for a, e in zip(boxes_a, boxes_e, strict=True):
            assert a.shape == e.shape
            np.testing.assert_allclose(a, e, atol=atol, rtol=0)
        for a, e in zip(masks_a, masks_e, strict=True):
            assert len(a) == len(e)
            for mask_a, mask_e in zip(a, e):
                # at most 2% of the pixels of either mask differ (an undertrained model's
                # mask can be empty in both, where an IoU would be undefined)
                mask_a, mask_e = mask_utils.decode(mask_a), mask_utils.decode(mask_e)
                union = int((mask_a | mask_e).sum())
                assert int((mask_a ^ mask_e).sum()) <= 0.02 * union


@pytest.mark.parametrize("collect", ["tmpdir", "gpu_collect"])
def test_dist_test_two_gloo_processes_match_one(trained, single_results, collect):
    _, expected, _ = single_results
    extra = ["--gpu-collect"] if collect == "gpu_collect" else ["--tmpdir", "out/gather_tmp"]
    environ_port = str(free_port())
    cmd = ["bash", str(ROOT / "tools" / "dist_test.sh")]
    proc_env = env()
    proc_env["PORT"] = environ_port
    proc = subprocess.Popen(
        [*cmd, str(DEMO_CONFIG), "work/latest.pth", "2", "--out", f"out/dist_{collect}.pkl",
         *extra, "--cfg-options", "data.workers_per_gpu=0"],
        cwd=trained, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    rc, out = finish(proc, timeout=90)
    assert rc == 0, out
    assert "2 process(es)" in out
    with open(trained / "out" / f"dist_{collect}.pkl", "rb") as f:
        results = pickle.load(f)
    _assert_same_results(results, expected, atol=1e-3)
    if collect == "tmpdir":
        assert list((trained / "out" / "gather_tmp").iterdir()) == []


def test_single_gpu_test_api_and_fused_model_match_tool(trained, single_results, monkeypatch):
    from mmdet_like.apis import build_detector, single_gpu_test
    from mmdet_like.datasets import build_dataloader, build_dataset
    from mmdet_like.engine import load_checkpoint, load_config
    from mmdet_like.models.utils import fuse_conv_bn

    _, expected, _ = single_results
    monkeypatch.chdir(trained)
    cfg = load_config(str(DEMO_CONFIG))
    dataset = build_dataset(cfg.data.test)
    loader = build_dataloader(dataset, 2, 0, shuffle=False)
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    load_checkpoint(model, "work/latest.pth")
    results = single_gpu_test(model, loader)
    _assert_same_results(results, expected, atol=1e-4)
    assert model.training, "the model's mode is restored"
    model.eval()
    fused = single_gpu_test(fuse_conv_bn(model), loader)
    _assert_same_results(fused, expected, atol=1e-2)


def test_demo_pictures_draws_a_grid_of_detections(trained):
    out = _run(
        [ROOT / "tools" / "demo_pictures.py", DEMO_CONFIG, "work/latest.pth", "data/demo/val",
         "out/grid.png", "--num", 3, "--cols", 2, "--scale", 2, "--score-thr", 0.0],
        trained,
    )  # fmt: skip
    assert "3 images with their detections" in out
    picture = cv2.imread(str(trained / "out" / "grid.png"))
    assert picture.shape == (2 * 256 + 4, 2 * 256 + 4, 3)
    first = cv2.imread(str(trained / "data" / "demo" / "val" / "000000.png"))
    plain = cv2.resize(first, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    assert not np.array_equal(picture[:256, :256], plain)  # something was drawn on it
    assert (picture[:, 256:260] == 255).all()  # the gap between columns
    assert (picture[260:, 260:] == 255).all()  # the empty fourth cell


def test_scale_result_enlarges_boxes_and_masks():
    tool = load_tool("demo_pictures")
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    boxes, masks = tool.scale_result(
        ([np.array([[2, 1, 4, 3, 0.9]], np.float32), np.zeros((0, 5), np.float32)],
         [[mask], []]),
        3,
    )  # fmt: skip
    np.testing.assert_allclose(boxes[0], [[6, 3, 12, 9, 0.9]])
    assert boxes[1].shape == (0, 5) and masks[1] == []
    assert masks[0][0].shape == (12, 15)
    ys, xs = np.nonzero(masks[0][0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (3, 8, 6, 11)
