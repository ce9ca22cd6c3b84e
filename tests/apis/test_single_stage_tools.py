"""RetinaNet and FCOS through the tools users run: tools/train.py, then tools/test.py with
``--eval bbox --out --show-dir`` and with ``--format-only``, and the Python API
(``init_detector``, ``inference_detector``, ``show_result``), on the demo configs
(configs/demo/retinanet_r18_fpn_demo.py, fcos_r18_fpn_demo.py) and a small demo dataset.

One epoch of 3 iterations leaves the classifiers near their 0.01 prior, below the 0.05 score
threshold, so the test runs keep every candidate (``test_cfg.score_thr=0``): then each image
has ``max_per_img`` detections to draw, write and evaluate."""

import json
import pickle
import re

import cv2
import numpy as np
import pytest

from mmdet_like.apis import inference_detector, init_detector, show_result
from tests.engine.cli_utils import ROOT, load_tool, run_tool_here

CONFIGS = {
    "retinanet": ROOT / "configs" / "demo" / "retinanet_r18_fpn_demo.py",
    "fcos": ROOT / "configs" / "demo" / "fcos_r18_fpn_demo.py",
}
NUM_VAL, MAX_PER_IMG = 3, 7
TEST_OPTIONS = (
    "--cfg-options", "data.workers_per_gpu=0", "test_cfg.score_thr=0.0",
    f"test_cfg.max_per_img={MAX_PER_IMG}",
)  # fmt: skip


def _run(args, cwd):
    """Run a tool in this process as its ``__main__`` block runs it (their own processes
    run in tests/apis/test_test_tool.py): its output."""
    return run_tool_here(args, cwd)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("single_stage")
    _run(
        [ROOT / "tools" / "make_demo_dataset.py", "data/demo", "--num-train", 4, "--num-val",
         NUM_VAL, "--seed", 5],
        cwd,
    )  # fmt: skip
    return cwd


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trained(request, data_dir):
    """(arch, cwd, work dir): the demo config of ``arch`` trained one epoch by tools/train.py."""
    arch = request.param
    work = f"work_{arch}"
    out = _run(
        [ROOT / "tools" / "train.py", CONFIGS[arch], "--work-dir", work, "--no-validate",
         "--cfg-options", "total_epochs=1", "data.imgs_per_gpu=2", "data.workers_per_gpu=0",
         "log_config.interval=1", "lr_config.warmup_iters=2"],
        data_dir,
    )  # fmt: skip
    assert "Epoch [1][2/2]" in out, out
    assert "loss_cls" in out and "loss_bbox" in out
    assert ("loss_centerness" in out) == (arch == "fcos")
    return arch, data_dir, work


def test_test_tool_evaluates_pickles_draws_and_formats(trained):
    arch, cwd, work = trained
    config, checkpoint = CONFIGS[arch], f"{work}/latest.pth"
    out = _run(
        [ROOT / "tools" / "test.py", config, checkpoint, "--eval", "bbox",
         "--out", f"out_{arch}/results.pkl", "--show-dir", f"out_{arch}/show",
         "--show-score-thr", "0.0", *TEST_OPTIONS],
        cwd,
    )  # fmt: skip
    metrics = dict(re.findall(r"^(bbox_mAP\w*): (-?[\d.]+)$", out, flags=re.M))
    assert {"bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"} <= set(metrics), out
    assert all(-1.0 <= float(v) <= 1.0 for v in metrics.values())
    with open(cwd / f"out_{arch}" / "results.pkl", "rb") as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL
    for per_class in results:  # boxes only: a list of 4 (n, 5) arrays per image
        assert len(per_class) == 4
        assert all(b.dtype == np.float32 and b.shape[1] == 5 for b in per_class)
        assert sum(len(b) for b in per_class) == MAX_PER_IMG
    coco = json.loads((cwd / "data/demo/annotations/instances_val.json").read_text())
    for img in coco["images"]:
        drawn = cv2.imread(str(cwd / f"out_{arch}" / "show" / img["file_name"]))
        source = cv2.imread(str(cwd / "data/demo/val" / img["file_name"]))
        assert drawn is not None and drawn.shape == source.shape
        assert not np.array_equal(drawn, source)  # its detections are drawn

    out = _run(
        [ROOT / "tools" / "test.py", config, checkpoint, "--format-only",
         "--eval-options", f"jsonfile_prefix=out_{arch}/json/demo", *TEST_OPTIONS],
        cwd,
    )  # fmt: skip
    assert "bbox_mAP" not in out
    assert not (cwd / f"out_{arch}/json/demo.segm.json").exists()
    items = json.loads((cwd / f"out_{arch}/json/demo.bbox.json").read_text())
    assert len(items) == NUM_VAL * MAX_PER_IMG
    by_image = {}
    for item in items:
        assert set(item) == {"image_id", "bbox", "score", "category_id"}
        assert 1 <= item["category_id"] <= 4
        by_image.setdefault(item["image_id"], []).append(item["score"])
    first = results[0]
    expected = np.sort(np.concatenate([b[:, 4] for b in first]))
    image_id = coco["images"][0]["id"]
    np.testing.assert_allclose(np.sort(by_image[image_id]), expected, rtol=0, atol=1e-4)


def test_inference_api_and_show_result(trained):
    arch, cwd, work = trained
    model = init_detector(
        str(CONFIGS[arch]),
        str(cwd / work / "latest.pth"),
        cfg_options={"test_cfg.score_thr": 0.0, "test_cfg.max_per_img": MAX_PER_IMG},
    )
    assert model.CLASSES == ("circle", "rectangle", "triangle", "star")
    img = cv2.imread(str(cwd / "data/demo/val/000000.png"))
    result = inference_detector(model, img)
    assert len(result) == 4 and sum(len(b) for b in result) == MAX_PER_IMG
    boxes = np.concatenate(result)
    assert (boxes[:, :4] >= 0).all() and (boxes[:, [0, 2]] <= 128).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    drawn = show_result(img, result, model.CLASSES, score_thr=0.0)
    assert drawn.shape == img.shape and (drawn != img).any()
    np.testing.assert_array_equal(show_result(img, result, model.CLASSES, score_thr=1.1), img)
    scaled = load_tool("demo_pictures").scale_result(result, 3)  # make demo-retinanet's picture
    np.testing.assert_allclose(np.concatenate(scaled)[:, :4], boxes[:, :4] * 3, rtol=1e-6)
