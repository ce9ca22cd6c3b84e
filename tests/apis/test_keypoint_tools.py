"""Keypoint R-CNN through the tools: tools/make_demo_dataset.py --keypoints, tools/train.py
on configs/demo/keypoint_rcnn_r18_fpn_demo.py (one short epoch), tools/test.py with
``--eval bbox keypoints --out --show-dir``, and the Python API (``inference_detector``
returns the keypoints, ``show_result`` draws them with the checkpoint's skeleton)."""

import json
import pickle
import re

import cv2
import numpy as np
import pytest

from mmdet_like.apis import inference_detector, init_detector, show_result
from tests.engine.cli_utils import ROOT, run_tool_here

CONFIG = ROOT / "configs" / "demo" / "keypoint_rcnn_r18_fpn_demo.py"
NUM_VAL, MAX_PER_IMG, K = 3, 6, 5
TEST_OPTIONS = (
    "--cfg-options", "data.workers_per_gpu=0", "test_cfg.rcnn.score_thr=0.0",
    f"test_cfg.rcnn.max_per_img={MAX_PER_IMG}",
)  # fmt: skip


def _run(args, cwd):
    """Run a tool in this process as its ``__main__`` block runs it (their own processes
    run in tests/apis/test_test_tool.py): its output."""
    return run_tool_here(args, cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("keypoints")
    _run([ROOT / "tools" / "make_demo_dataset.py", "data/demo", "--num-train", 4, "--num-val",
          NUM_VAL, "--seed", 2, "--keypoints"], cwd)  # fmt: skip
    out = _run(
        [ROOT / "tools" / "train.py", CONFIG, "--work-dir", "work", "--no-validate",
         "--cfg-options", "total_epochs=1", "data.imgs_per_gpu=2", "data.workers_per_gpu=0",
         "log_config.interval=1", "lr_config.warmup_iters=2"],
        cwd,
    )  # fmt: skip
    assert "Epoch [1][2/2]" in out and "loss_keypoint" in out, out
    return cwd


def test_demo_dataset_keypoints_are_named_vertices(trained):
    coco = json.loads((trained / "data/demo/annotations/keypoints_val.json").read_text())
    plain = json.loads((trained / "data/demo/annotations/instances_val.json").read_text())
    assert len(coco["annotations"]) == len(plain["annotations"])  # the same instances
    names = coco["categories"][0]["keypoints"]
    assert names == ["top", "top_left", "top_right", "bottom_left", "bottom_right"]
    labelled_per_class = {}
    for ann in coco["annotations"]:
        points = np.asarray(ann["keypoints"]).reshape(K, 3)
        assert ann["num_keypoints"] == int((points[:, 2] > 0).sum())
        x, y, w, h = ann["bbox"]
        labelled = points[points[:, 2] > 0]
        # every labelled vertex lies within a pixel of its instance's (visible part's) box
        assert ((labelled[:, 0] >= x - 1) & (labelled[:, 0] <= x + w + 1)).all()
        assert ((labelled[:, 1] >= y - 1) & (labelled[:, 1] <= y + h + 1)).all()
        labelled_per_class.setdefault(ann["category_id"], set()).add(
            int(points[:, 2].astype(bool).sum())
        )
        by_name = dict(zip(names, points))
        if by_name["top_left"][2] and by_name["top_right"][2]:
            assert by_name["top_left"][0] <= by_name["top_right"][0]
        if by_name["bottom_left"][2] and by_name["bottom_right"][2]:
            assert by_name["bottom_left"][0] <= by_name["bottom_right"][0]
    assert labelled_per_class.get(1, {0}) == {0}  # circles have no keypoints


def test_test_tool_evaluates_keypoints_pickles_and_draws(trained):
    out = _run(
        [ROOT / "tools" / "test.py", CONFIG, "work/latest.pth", "--eval", "bbox", "keypoints",
         "--out", "out/results.pkl", "--show-dir", "out/show", "--show-score-thr", "0.0",
         *TEST_OPTIONS],
        trained,
    )  # fmt: skip
    metrics = dict(re.findall(r"^(\w+_mAP\w*): (-?[\d.]+)$", out, flags=re.M))
    assert {"bbox_mAP", "keypoints_mAP", "keypoints_mAP_50"} <= set(metrics), out
    with open(trained / "out" / "results.pkl", "rb") as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL
    for bbox_results, segm_results, keypoint_results in results:
        assert segm_results is None and len(bbox_results) == len(keypoint_results) == 4
        assert sum(len(b) for b in bbox_results) == MAX_PER_IMG
        for boxes, points in zip(bbox_results, keypoint_results):
            assert points.shape == (len(boxes), K, 3) and points.dtype == np.float32
    drawn = cv2.imread(str(trained / "out" / "show" / "000000.png"))
    source = cv2.imread(str(trained / "data/demo/val/000000.png"))
    assert drawn.shape == source.shape and not np.array_equal(drawn, source)


def test_inference_api_returns_and_draws_keypoints(trained):
    model = init_detector(str(CONFIG), str(trained / "work" / "latest.pth"),
                          cfg_options={"test_cfg.rcnn.score_thr": 0.0,
                                       "test_cfg.rcnn.max_per_img": MAX_PER_IMG})  # fmt: skip
    assert model.KEYPOINT_SKELETON == ((0, 1), (0, 2), (1, 2), (1, 3), (2, 4), (3, 4))
    img = cv2.imread(str(trained / "data/demo/val/000001.png"))
    bbox_results, _, keypoint_results = inference_detector(model, img)
    points = np.concatenate(keypoint_results)
    boxes = np.concatenate(bbox_results)
    assert points.shape == (MAX_PER_IMG, K, 3)
    # every keypoint is decoded inside (or on the edge of) its box
    assert (points[..., 0] >= boxes[:, None, 0] - 1e-3).all()
    assert (points[..., 0] <= boxes[:, None, 2] + 1e-3).all()
    plain = show_result(img, (bbox_results, None, keypoint_results), model.CLASSES, 0.0)
    with_skeleton = show_result(img, (bbox_results, None, keypoint_results), model.CLASSES,
                                0.0, skeleton=model.KEYPOINT_SKELETON)  # fmt: skip
    assert (plain != img).any() and (with_skeleton != plain).any()
