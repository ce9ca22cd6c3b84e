"""A detector whose weights are set by hand, not trained, so that it finds bright squares of
one size (8 px in its input) and nothing else: the scale-dependent model that sliced
inference is tested with (tests/apis/test_sliced_inference.py).

It is a real ``RetinaNet`` (``RetinaHead``: anchors, box decoding, score threshold,
class-wise NMS, rescaling to the original image) on a fixed backbone, ``BlobContrast``
(registered here): one feature at stride 1, the mean of the ``size`` x ``size`` square
centred on each pixel minus twice the mean of the ring around it out to ``2 * size``. A
lone bright square of ``size`` px scores 1; a smaller one (an 8 px square seen shrunk to
2 px) about 1/16, the inside of a larger one below 0. The head's classifier turns the
feature into the score ``sigmoid(GAIN * (feature - THRESHOLD))`` at anchors of ``size`` px
centred on each pixel, and predicts no box offset: a lone square is found where it is.

Imported by configs through ``custom_imports=dict(imports=["tests.apis.blob_detector"])``.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.engine import save_checkpoint
from mmdet_like.models import build_detector
from mmdet_like.registry import BACKBONES

SIZE = 8  # the square side the detector finds, in its input
GAIN, THRESHOLD = 20.0, 0.7

CONFIG = """
custom_imports = dict(imports=["tests.apis.blob_detector"])
model = dict(
    type="RetinaNet",
    backbone=dict(type="BlobContrast", size={size}),
    bbox_head=dict(
        type="RetinaHead", num_classes=1, in_channels=1, stacked_convs=0, feat_channels=1,
        anchor_generator=dict(type="AnchorGenerator", octave_base_scale={size},
                              scales_per_octave=1, ratios=[1.0], strides=[1]),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                        target_stds=[1.0] * 4),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    ),
)
train_cfg = dict(
    assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                  ignore_iof_thr=-1),
    allowed_border=-1, pos_weight=-1,
)
test_cfg = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.5, nms=dict(type="nms", iou_thr=0.5),
                max_per_img=200)
img_norm_cfg = dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0], to_rgb=False)
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="MultiScaleFlipAug", img_scale=({scale}, {scale}), flip=False, transforms=[
        dict(type="Resize", keep_ratio=True),
        dict(type="RandomFlip"),
        dict(type="Normalize", **img_norm_cfg),
        dict(type="Pad", size_divisor=32),
        dict(type="PackDetInputs"),
    ]),
]
data = dict(
    imgs_per_gpu=1, workers_per_gpu=0,
    test=dict(type="CocoDataset", ann_file="{ann_file}", img_prefix="{img_prefix}",
              classes=("blob",), pipeline=test_pipeline, test_mode=True),
)
"""


@BACKBONES.register(force=True)
class BlobContrast(nn.Module):
    """(N, 3, H, W) image in [0, 1] -> one (N, 1, H, W) feature at stride 1: the mean of the
    ``size``-px square centred on each pixel minus twice the mean of the ring around it
    (the ``2 * size`` square without the inner one). A fixed filter, not learned."""

    def __init__(self, size=SIZE, pretrained=None):
        super().__init__()
        if size % 2 or pretrained is not None:
            raise ValueError(f"BlobContrast: an even size and no weights to load, got {size}")
        self.size = size
        kernel = torch.full((2 * size, 2 * size), -2.0 / (3 * size * size))
        kernel[size // 2 : size // 2 + size, size // 2 : size // 2 + size] = 1.0 / (size * size)
        self.register_buffer("kernel", (kernel / 3).expand(1, 3, -1, -1).contiguous())

    def init_weights(self):
        """Nothing to initialise: the filter is fixed."""

    def forward(self, x):
        # output (i, j) sees input rows/columns [i - size, i + size): centred on (j, i)
        feature = F.conv2d(x, self.kernel, padding=self.size)
        return (feature[..., : x.shape[-2], : x.shape[-1]],)


def write_config(path, img_scale, ann_file="unused.json", img_prefix=""):
    """The blob detector's config at ``path``: test pipeline resizing to ``img_scale`` px
    (a square bound, ratio kept), a one-class COCO test set ``ann_file`` / ``img_prefix``."""
    text = CONFIG.format(size=SIZE, scale=img_scale, ann_file=ann_file, img_prefix=img_prefix)
    Path(path).write_text(text)
    return str(path)


def write_checkpoint(path, cfg):
    """A checkpoint of the detector of ``cfg`` with the hand-set head: class score
    ``sigmoid(GAIN * (feature - THRESHOLD))``, no box offsets."""
    model = build_detector(cfg.model, test_cfg=cfg.test_cfg)
    head = model.bbox_head
    with torch.no_grad():
        head.retina_cls.weight.zero_()
        head.retina_cls.weight[0, 0, 1, 1] = GAIN
        head.retina_cls.bias.fill_(-GAIN * THRESHOLD)
        head.retina_reg.weight.zero_()
        head.retina_reg.bias.zero_()
    save_checkpoint(str(path), model, meta=dict(CLASSES=("blob",)))
    return str(path)


def draw_blobs(height, width, num_small, seed=0, large=None, cell=64):
    """A black BGR image with ``num_small`` white squares of ``SIZE`` px, one in each of as
    many random ``cell``-px cells (at a random multiple of 4 px in the cell, 16 px or more
    apart), and, where ``large`` is given, one white square of ``large`` px in the top-left
    cell. Returns the image and the (n, 4) float32 ``[x1, y1, x2, y2]`` boxes of the small
    and of the large squares."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), dtype=np.uint8)
    cells = [(r, c) for r in range(height // cell) for c in range(width // cell)]
    if large is not None:
        cells = [(r, c) for r, c in cells if r > 0 or c > 0]  # the first cell holds the large
    chosen = rng.choice(len(cells), size=num_small, replace=False)
    small = []
    for index in sorted(chosen.tolist()):
        row, col = cells[index]
        x = col * cell + 4 * int(rng.integers(2, (cell - SIZE - 8) // 4 + 1))
        y = row * cell + 4 * int(rng.integers(2, (cell - SIZE - 8) // 4 + 1))
        img[y : y + SIZE, x : x + SIZE] = 255
        small.append([x, y, x + SIZE, y + SIZE])
    large_boxes = []
    if large is not None:
        start = (cell - large) // 2 // 4 * 4
        img[start : start + large, start : start + large] = 255
        large_boxes.append([start, start, start + large, start + large])
    return (
        img,
        np.array(small, dtype=np.float32).reshape(-1, 4),
        np.array(large_boxes, dtype=np.float32).reshape(-1, 4),
    )
