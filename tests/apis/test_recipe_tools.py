"""The augmentation recipes through tools/train.py, on the demo shapes dataset: a RetinaNet
trained for a few iterations on Mosaic + RandomAffine + MixUp + HSV through
MultiImageMixDataset with multi-scale batches (BatchSyncRandomResize), and a Mask R-CNN on
large-scale jitter (RandomResize, RandomCrop with recomputed boxes, FilterAnnotations,
Pad to a fixed size)."""

import re

import pytest

from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS
from tests.engine.cli_utils import ROOT, run_tool_here

DEMO = ROOT / "configs" / "demo"
NORM = "dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)"


@HOOKS.register(force=True)
class RecordBatchShapesHook(Hook):
    """Records the (N, C, H, W) shape of every training batch the model gets."""

    shapes = []

    def before_train_iter(self, runner):
        RecordBatchShapesHook.shapes.append(tuple(runner.data_batch["img"].shape))


MOSAIC_CONFIG = f"""
_base_ = ["{DEMO}/retinanet_r18_fpn_demo.py"]
img_norm_cfg = {NORM}
train_pipeline = [
    dict(type="Mosaic", img_scale=(64, 64), pad_val=114.0),
    dict(type="RandomAffine", scaling_ratio_range=(0.5, 1.5), border=(-32, -32)),
    dict(type="MixUp", img_scale=(64, 64), ratio_range=(0.8, 1.6), pad_val=114.0),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Resize", img_scale=(64, 64), keep_ratio=True),
    dict(type="Pad", pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="PackDetInputs"),
]
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=1,
    train=dict(
        _delete_=True,
        type="MultiImageMixDataset",
        dataset=dict(
            type="CocoDataset",
            ann_file="data/demo/annotations/instances_train.json",
            img_prefix="data/demo/train/",
            pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)],
            filter_empty_gt=False,
        ),
        pipeline=train_pipeline,
    ),
    batch_augments=[dict(type="BatchSyncRandomResize", random_size_range=(64, 128),
                         size_divisor=32, interval=1)],
)
custom_hooks = [dict(type="RecordBatchShapesHook")]
total_epochs = 1
log_config = dict(interval=1)
lr_config = dict(warmup_iters=2)
"""

LSJ_CONFIG = f"""
_base_ = ["{DEMO}/mask_rcnn_r18_fpn_demo.py"]
img_norm_cfg = {NORM}
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomResize", scale=(96, 96), ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_type="absolute_range", crop_size=(96, 96), recompute_bbox=True,
         allow_negative_crop=True),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size=(96, 96)),
    dict(type="PackDetInputs"),
]
data = dict(imgs_per_gpu=2, workers_per_gpu=0, train=dict(pipeline=train_pipeline))
custom_hooks = [dict(type="RecordBatchShapesHook")]
total_epochs = 1
log_config = dict(interval=1)
lr_config = dict(warmup_iters=2)
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("recipes")
    run_tool_here([ROOT / "tools" / "make_demo_dataset.py", "data/demo", "--num-train", 6,
                   "--num-val", 2, "--seed", 3], cwd)  # fmt: skip
    return cwd


def train(cwd, name, text):
    (cwd / f"{name}.py").write_text(text)
    RecordBatchShapesHook.shapes = []
    out = run_tool_here([ROOT / "tools" / "train.py", f"{name}.py", "--work-dir", f"work_{name}",
                         "--no-validate", "--seed", 0], cwd)  # fmt: skip
    losses = [float(v) for v in re.findall(r"\bloss: (-?[\d.]+|nan|inf)", out)]
    return out, losses, list(RecordBatchShapesHook.shapes)


def test_mosaic_mixup_multiscale_training_runs(data_dir):
    out, losses, shapes = train(data_dir, "mosaic", MOSAIC_CONFIG)
    assert "Epoch [1][3/3]" in out, out
    assert len(losses) == 3 and all(0 < v < 100 for v in losses), out
    assert (data_dir / "work_mosaic" / "epoch_1.pth").is_file()
    # the pipeline gives 64 x 64 images; the batch resizer draws 64-128 px sizes from the
    # first batch on (interval 1), multiples of 32, square (the aspect ratio of 64 x 64)
    assert shapes[0] == (2, 3, 64, 64)
    for n, c, h, w in shapes:
        assert (n, c) == (2, 3) and h == w and h % 32 == 0 and 64 <= h <= 128


def test_lsj_mask_rcnn_training_runs(data_dir):
    out, losses, shapes = train(data_dir, "lsj", LSJ_CONFIG)
    assert "Epoch [1][3/3]" in out, out
    assert "loss_mask" in out
    assert len(losses) == 3 and all(0 < v < 100 for v in losses), out
    # every image is padded to exactly 96 x 96: the collate stacks them
    assert shapes == [(2, 3, 96, 96)] * 3
