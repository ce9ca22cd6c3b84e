"""Start-up checks of the tools, as a user meets them: a model whose class counts do not
match the data, a checkpoint of another model or class order, metrics that cannot run on
the dataset, ``--show`` without a display, and ``tools/check_dataset.py``. Each is refused
before any image goes through the model, with one message (no traceback) that names both
sides and the key to change, and a non-zero exit status. One run of each tool is its own
process (``run``); the others run in this process as the tool's ``__main__`` block runs it
(``run_here``)."""

import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from mmdet_like.apis import build_detector, init_detector
from mmdet_like.apis.startup_check import (
    StartupCheckError,
    check_class_counts,
    check_evaluator,
    check_evaluator_outputs,
    class_count_fields,
    model_outputs,
)
from mmdet_like.engine import load_config, save_checkpoint
from mmdet_like.evaluation import EvaluationError, build_evaluator
from mmdet_like.structures import DatasetGroundTruth
from tests.engine.cli_utils import PYTHON, ROOT, call_tool, env, finish, load_tool

DEMO_CONFIG = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"
NAMES = ("circle", "rectangle", "triangle", "star")
CLASS_KEYS = ("model.roi_head.bbox_head.num_classes", "model.roi_head.mask_head.num_classes")


def run(tool, cwd, *args, environ=None):
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "tools" / tool), *map(str, args)],
        cwd=cwd,
        env=environ or env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return finish(proc, timeout=180)


def run_here(tool, cwd, *args):
    """:func:`run` in this process (``call_tool``): (exit status, stdout + stderr)."""
    return call_tool(tool, *args, cwd=cwd)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo dataset (4 classes; 4 train, 3 val images) in ``cwd/data/demo``, and a
    checkpoint of the demo model (random weights, the dataset's classes)."""
    cwd = tmp_path_factory.mktemp("demo")
    load_tool("make_demo_dataset").make_dataset(str(cwd / "data" / "demo"), 4, 3, seed=1)
    cfg = load_config(str(DEMO_CONFIG))
    torch.manual_seed(0)
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    save_checkpoint(str(cwd / "demo.pth"), model, meta=dict(CLASSES=list(NAMES)))
    return cwd


def checkpoint_of(cwd, name, num_classes=4, classes=NAMES):
    cfg = load_config(str(DEMO_CONFIG), {key: num_classes for key in CLASS_KEYS})
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    path = cwd / name
    save_checkpoint(str(path), model, meta=dict(CLASSES=list(classes)))
    return path


@pytest.mark.parametrize("num_classes", [2, 80])
def test_train_refuses_class_counts_that_do_not_match_the_dataset(demo, num_classes):
    options = [f"{key}={num_classes}" for key in CLASS_KEYS]
    rc, out = (run if num_classes == 2 else run_here)(  # one in its own process
        "train.py",
        demo,
        DEMO_CONFIG,
        "--work-dir",
        "work",
        "--cfg-options",
        *options,
        "data.workers_per_gpu=0",
    )
    assert rc == 1, out
    assert "Traceback" not in out
    assert f"model.roi_head.bbox_head.num_classes is {num_classes}" in out
    assert f"model.roi_head.mask_head.num_classes is {num_classes}" in out
    assert "has 4 classes: circle, rectangle, triangle, star" in out
    assert (
        "Fix: set model.roi_head.bbox_head.num_classes=4 model.roi_head.mask_head.num_classes=4"
        in out
    )
    assert "Epoch [1]" not in out  # refused before training


def test_test_tool_refuses_a_checkpoint_of_another_model_unless_allow_partial(demo):
    other = checkpoint_of(demo, "three_classes.pth", num_classes=3, classes=NAMES[:3])
    args = [
        "test.py",
        demo,
        DEMO_CONFIG,
        other,
        "--eval",
        "bbox",
        "--cfg-options",
        "data.workers_per_gpu=0",
    ]
    rc, out = run_here(*args)
    assert rc == 1 and "Traceback" not in out, out
    assert "does not fit the model of the config" in out
    assert "roi_head.bbox_head.fc_cls.weight" in out and "shape mismatch" in out
    assert "--allow-partial" in out and "inference" not in out
    rc, out = run_here(*args, "--allow-partial")
    assert rc == 0, out
    assert "bbox_mAP" in out


def test_test_tool_refuses_a_checkpoint_of_another_class_order(demo):
    reordered = checkpoint_of(demo, "reordered.pth", classes=NAMES[::-1])
    args = ["test.py", demo, DEMO_CONFIG, reordered, "--eval", "bbox", "--cfg-options",
            "data.workers_per_gpu=0"]  # fmt: skip
    rc, out = run_here(*args)
    assert rc == 1 and "Traceback" not in out, out
    assert "in that order" in out
    assert "data.test.classes=('star', 'triangle', 'rectangle', 'circle')" in out
    # the fix it names works: the same checkpoint with the classes in its order
    rc, out = run_here(*args, "data.test.classes=('star','triangle','rectangle','circle')")
    assert rc == 0, out


def test_test_tool_refuses_class_counts_before_inference(demo):
    options = [f"{key}=3" for key in CLASS_KEYS]
    rc, out = run(
        "test.py", demo, DEMO_CONFIG, demo / "demo.pth", "--eval", "bbox", "--cfg-options", *options
    )
    assert rc == 1 and "Traceback" not in out, out
    assert "model.roi_head.bbox_head.num_classes is 3" in out and "data.test (CocoDataset" in out


def test_show_without_a_display_says_so(demo, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    rc, out = run_here("test.py", demo, DEMO_CONFIG, demo / "demo.pth", "--show")
    assert rc == 2, out
    assert "--show needs a display" in out and "--show-dir" in out


def test_init_detector_refuses_a_checkpoint_of_another_model(demo):
    other = checkpoint_of(demo, "three_for_init.pth", num_classes=3, classes=NAMES[:3])
    with pytest.raises(StartupCheckError, match="does not fit the model"):
        init_detector(str(DEMO_CONFIG), str(other))
    model = init_detector(str(DEMO_CONFIG), str(other), allow_partial=True)
    assert model.CLASSES == NAMES[:3]
    cfg = load_config(str(DEMO_CONFIG))
    cfg.data.test.classes = list(NAMES)
    with pytest.raises(StartupCheckError, match="in that order"):
        init_detector(cfg, str(checkpoint_of(demo, "reordered_init.pth", classes=NAMES[::-1])))


def test_class_count_fields_skip_the_rpn():
    cfg = load_config(str(DEMO_CONFIG))
    assert [path for path, _ in class_count_fields(cfg.model)] == list(CLASS_KEYS)

    class Data:
        CLASSES = NAMES

    check_class_counts(cfg.model, Data(), "train")  # 4 and 4: fine
    Data.CLASSES = NAMES[:3]
    with pytest.raises(
        StartupCheckError, match="or name the 4 classes the model predicts in data.train.classes"
    ):
        check_class_counts(cfg.model, Data(), "train")


def test_coco_metrics_on_a_dataset_without_coco_annotations_fail_at_start_up():
    ground_truth = DatasetGroundTruth(
        img_ids=[0], class_names=("a",), get_ann_info=None, source="data/voc/ImageSets/Main/val.txt"
    )
    check_evaluator(build_evaluator("mAP"), ground_truth, "val")
    with pytest.raises(EvaluationError, match="data.val: metric 'bbox' .* needs COCO annotations"):
        check_evaluator(build_evaluator("bbox"), ground_truth, "val")


def test_check_dataset_runs_the_start_up_checks_and_finds_missing_images(demo):
    rc, out = run("check_dataset.py", demo, DEMO_CONFIG)
    assert rc == 0, out
    assert "image files: all 4 checked decode whole" in out
    assert "image files: all 3 checked decode whole" in out
    (demo / "data" / "demo" / "val" / "000001.png").rename(demo / "moved.png")
    try:
        rc, out = run_here("check_dataset.py", demo, DEMO_CONFIG, "--quick")
        assert rc == 1, out
        assert "1 of 3 image files checked cannot be used (missing: 1)" in out
        assert "000001.png: no such file. Fix: check the path (in a dataset: img_prefix" in out
        # the project's own errors are printed as they are (with their fix), not unwrapped
        rc, out = run_here(
            "check_dataset.py",
            demo,
            DEMO_CONFIG,
            "--cfg-options",
            "data.val.img_prefix=data/demo/nowhere/",
        )
        assert rc == 1 and "Traceback" not in out, out
        assert "ERROR: " in out and "FileNotFoundError" not in out and "Fix:" in out
        # and the model's class counts against the data
        rc, out = run_here(
            "check_dataset.py",
            demo,
            DEMO_CONFIG,
            "--cfg-options",
            *(f"{key}=5" for key in CLASS_KEYS),
        )
        assert rc == 1 and "model.roi_head.bbox_head.num_classes is 5" in out, out
    finally:
        (demo / "moved.png").rename(demo / "data" / "demo" / "val" / "000001.png")


FASTER_OPTIONS = (
    "model.type=FasterRCNN",
    "model.roi_head.mask_head=None",
    "model.roi_head.mask_roi_extractor=None",
)


def test_test_tool_refuses_metrics_the_model_cannot_predict_before_inference(demo):
    """--eval segm on a box-only model (issue 27: it used to fail after the whole inference)."""
    rc, out = run_here("test.py", demo, DEMO_CONFIG, demo / "demo.pth", "--eval", "bbox",
                       "segm", "--cfg-options", *FASTER_OPTIONS)  # fmt: skip
    assert rc == 1, out
    assert (
        "test.py: error: --eval: metric 'segm' needs masks and the model (FasterRCNN) predicts "
        "boxes with classes: drop 'segm' from the metrics (this model can be evaluated with "
        "['bbox', 'proposal', 'proposal_fast']), or test a model that predicts them"
    ) in out
    assert "testing 3 images" not in out  # refused before inference


def test_model_outputs_and_what_each_metric_needs():
    cfg = load_config(str(DEMO_CONFIG))
    mask_rcnn = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    assert model_outputs(mask_rcnn) == {"boxes", "masks"}
    check_evaluator_outputs(build_evaluator(["bbox", "segm", "mAP"]), mask_rcnn)
    with pytest.raises(EvaluationError, match="metric 'keypoints' needs keypoints"):
        check_evaluator_outputs(build_evaluator("keypoints"), mask_rcnn)
    with pytest.raises(EvaluationError, match="metric 'recall' needs class-agnostic proposals"):
        check_evaluator_outputs(build_evaluator("recall"), mask_rcnn)
    rpn_cfg = load_config(str(ROOT / "configs" / "rpn_r50_fpn_1x.py"))
    rpn = build_detector(rpn_cfg.model, rpn_cfg.train_cfg, rpn_cfg.test_cfg)
    assert model_outputs(rpn) == {"proposals"}
    check_evaluator_outputs(build_evaluator(["proposal_fast", "recall"]), rpn)
    with pytest.raises(EvaluationError, match=r"evaluated with \['proposal', 'proposal_fast'\]"):
        check_evaluator_outputs(build_evaluator("bbox"), rpn, "--eval")


@pytest.mark.parametrize(
    ("name", "hint"), [("map", "Did you mean 'mAP'?"), ("BBOX", "Did you mean 'bbox'?"),
                       ("segn", "Did you mean 'segm'?"), ("accuracy", "Known metrics")],
)  # fmt: skip
def test_a_misspelt_metric_gets_the_name_it_resembles(name, hint):
    with pytest.raises(EvaluationError, match=f"unknown metric '{name}'") as info:
        build_evaluator(name)
    assert hint in str(info.value)
    assert ("Did you mean" in str(info.value)) == (name != "accuracy")


def test_a_failing_metric_keeps_the_results_of_the_inference(demo, monkeypatch):
    import pickle
    import re

    from mmdet_like.evaluation.metrics import CocoMetric

    def fails(self, results, ground_truth, logger=None):
        raise EvaluationError("pycocotools failed")

    monkeypatch.setattr(CocoMetric, "compute", fails)
    rc, out = run_here("test.py", demo, DEMO_CONFIG, demo / "demo.pth", "--eval", "bbox")
    assert rc == 1, out
    kept = re.search(r"the results of 3 images are kept in (\S+\.pkl)", out)
    assert kept and "pycocotools failed" in out, out
    with open(kept.group(1), "rb") as f:
        assert len(pickle.load(f)) == 3
    Path(kept.group(1)).unlink()
    # evaluation that succeeds leaves no file behind
    monkeypatch.undo()
    before = set(Path(tempfile.gettempdir()).glob("test_results_*.pkl"))
    rc, out = run_here("test.py", demo, DEMO_CONFIG, demo / "demo.pth", "--eval", "bbox")
    assert rc == 0, out
    assert set(Path(tempfile.gettempdir()).glob("test_results_*.pkl")) == before
