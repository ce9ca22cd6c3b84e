"""Cascade Mask R-CNN through the tools users run, on the demo config
(configs/demo/cascade_mask_rcnn_r18_fpn_demo.py) and a small demo dataset: tools/train.py
(the stage losses logged), tools/test.py with ``--eval bbox segm --out --show-dir``, and
``inference_detector`` / ``show_result``. One epoch of 2 iterations leaves the classifier
near uniform, so the test keeps every candidate (``score_thr=0``)."""

import pickle
import re

import cv2
import numpy as np

from mmdet_like.apis import inference_detector, init_detector, show_result
from tests.engine.cli_utils import ROOT, run_tool_here

CONFIG = ROOT / "configs" / "demo" / "cascade_mask_rcnn_r18_fpn_demo.py"
NUM_VAL, MAX_PER_IMG = 2, 5


def test_cascade_demo_config_trains_tests_and_draws(tmp_path):
    # in this process as the tools' __main__ blocks run them (their own processes run in
    # tests/apis/test_test_tool.py)
    run = lambda args: run_tool_here(args, tmp_path)  # noqa: E731
    run([ROOT / "tools" / "make_demo_dataset.py", "data/demo", "--num-train", 4, "--num-val",
         NUM_VAL, "--seed", 3])  # fmt: skip
    out = run(
        [ROOT / "tools" / "train.py", CONFIG, "--work-dir", "work", "--no-validate",
         "--cfg-options", "total_epochs=1", "data.imgs_per_gpu=2", "data.workers_per_gpu=0",
         "log_config.interval=1", "lr_config.warmup_iters=2"]
    )  # fmt: skip
    assert "Epoch [1][2/2]" in out, out
    for key in ("s0.loss_cls", "s1.loss_bbox", "s2.acc", "loss_mask"):
        assert key in out, out
    options = ("--cfg-options", "data.workers_per_gpu=0", "test_cfg.rcnn.score_thr=0.0",
               f"test_cfg.rcnn.max_per_img={MAX_PER_IMG}")  # fmt: skip
    out = run(
        [ROOT / "tools" / "test.py", CONFIG, "work/latest.pth", "--eval", "bbox", "segm",
         "--out", "out/results.pkl", "--show-dir", "out/show", "--show-score-thr", "0.0",
         *options]
    )  # fmt: skip
    metrics = dict(re.findall(r"^((?:bbox|segm)_mAP): (-?[\d.]+)$", out, flags=re.M))
    assert set(metrics) == {"bbox_mAP", "segm_mAP"}, out
    with open(tmp_path / "out" / "results.pkl", "rb") as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL
    for boxes, masks in results:
        assert len(boxes) == 4 and sum(len(b) for b in boxes) == MAX_PER_IMG
        assert [len(m) for m in masks] == [len(b) for b in boxes]
    assert len(list((tmp_path / "out" / "show").iterdir())) == NUM_VAL

    model = init_detector(
        str(CONFIG), str(tmp_path / "work" / "latest.pth"),
        cfg_options={"test_cfg.rcnn.score_thr": 0.0, "test_cfg.rcnn.max_per_img": MAX_PER_IMG},
    )  # fmt: skip
    img = cv2.imread(str(tmp_path / "data/demo/val/000000.png"))
    boxes, masks = inference_detector(model, img)
    assert sum(len(b) for b in boxes) == MAX_PER_IMG
    drawn = show_result(img, (boxes, masks), model.CLASSES, score_thr=0.0)
    assert drawn.shape == img.shape and not np.array_equal(drawn, img)
