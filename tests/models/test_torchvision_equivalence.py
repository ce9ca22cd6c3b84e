"""Proof that configs/torchvision/ reproduce torchvision's Mask R-CNN at inference.

torchvision's ``maskrcnn_resnet50_fpn`` (random weights, fixed seed; frozen batch norms
with random statistics, as its pretrained models run them) is converted by
tools/convert_torchvision_detection.py, loaded into our model built from
configs/torchvision/mask_rcnn_r50_fpn_torchvision.py and both run on the same photograph
(scikit-image's ``astronaut``), resized to short side 320 / long side 512 on both sides.
Random weights give odd, flat scores, so both keep every score (threshold 0) and the 100
best detections are compared: same labels, boxes within 1e-2 px, scores within
1e-4, every mask IoU above 0.99.

Folding (``fold_norm``, on by default): our backbone folds each frozen batch norm into its
convolution, which computes the same function with different rounding (about 1e-6 relative
per layer; through 50 layers of random weights about 1e-2 px on a box). The exact comparison
runs with ``fold_norm=False`` (the norm after the convolution, as torchvision computes it);
a second run with folding on must agree with it to a looser tolerance.

Masks: torchvision returns probabilities; ours are ``prob >= mask_thr_binary (0.5)``, so
torchvision's are thresholded the same way (random weights leave dead-ReLU regions whose
logit is exactly 0, probability exactly 0.5).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.apis import inference_detector, init_detector
from mmdet_like.engine import load_config
from tests.engine.cli_utils import load_tool
from tests.models.torchvision_helpers import freeze_batch_norms

skdata = pytest.importorskip("skimage.data")
detection = pytest.importorskip("torchvision.models.detection")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "torchvision" / "mask_rcnn_r50_fpn_torchvision.py"
MIN_SIZE, MAX_SIZE = 320, 512


def _converter():
    return load_tool("convert_torchvision_detection")


def _torchvision_model():
    torch.manual_seed(0)
    model = detection.maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        box_score_thresh=0.0,
    )
    # torchvision's pretrained models run frozen batch norms (its weights=None build has
    # BatchNorm2d); swap them in, with random statistics near unit scale
    freeze_batch_norms(model.backbone.body)
    return model.eval()


def _ours(tmp_path, tv_model, fold_norm):
    src, dst = tmp_path / "torchvision.pth", tmp_path / "converted.pth"
    torch.save(tv_model.state_dict(), src)
    meta = _converter().convert(str(src), str(dst), keep_unused=True)
    assert meta["num_classes"] == 90 and meta["arch"] == "mask_rcnn"
    checkpoint = torch.load(dst, weights_only=True)
    assert set(checkpoint) == {"state_dict", "meta"}
    cfg = load_config(
        str(CONFIG),
        dict(
            model=dict(
                backbone=dict(fold_norm=fold_norm),
                roi_head=dict(bbox_head=dict(num_classes=90), mask_head=dict(num_classes=90)),
            ),
            test_cfg=dict(rcnn=dict(score_thr=0.0)),
        ),
    )
    pipeline = cfg.data.test.pipeline
    pipeline[1]["img_scale"] = (MAX_SIZE, MIN_SIZE)
    cfg.data.test.pipeline = pipeline
    model = init_detector(cfg, str(dst))
    assert model.CLASSES[0] == "person" and len(model.CLASSES) == 90
    # the exact comparison runs NCHW as torchvision does (channels-last inference, our
    # default on the CPU, rounds differently, like the folded norms)
    model.channels_last_inference = False
    return model


def _flatten(bbox_results, segm_results):
    """Per-class results -> boxes (n, 4), scores, torchvision labels (class + 1), masks."""
    labels = np.concatenate([np.full(len(b), c + 1) for c, b in enumerate(bbox_results)])
    dets = np.concatenate(bbox_results)
    masks = np.stack([m for per_class in segm_results for m in per_class])
    return dets[:, :4], dets[:, 4], labels, masks


def _sorted(boxes, scores, labels, masks):
    order = np.lexsort((-scores, labels))
    return boxes[order], scores[order], labels[order], masks[order]


def test_mask_rcnn_matches_torchvision(tmp_path, at_most_4_threads):
    tv_model = _torchvision_model()
    ours = _ours(tmp_path, tv_model, fold_norm=False)
    rgb = skdata.astronaut()  # (512, 512, 3) uint8 RGB photograph

    with torch.no_grad():
        expected = tv_model([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])[0]
    bbox_results, segm_results = inference_detector(ours, np.ascontiguousarray(rgb[..., ::-1]))

    got = _sorted(*_flatten(bbox_results, segm_results))
    want = _sorted(
        expected["boxes"].numpy(),
        expected["scores"].numpy(),
        expected["labels"].numpy(),
        expected["masks"][:, 0].numpy() >= 0.5,
    )
    assert len(want[0]) == 100  # enough detections for the comparison to mean something
    assert len(got[0]) == len(want[0])
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-2)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-4)
    assert got[3].shape == want[3].shape == (100, 512, 512)
    inter = (got[3] & want[3]).sum((1, 2))
    union = (got[3] | want[3]).sum((1, 2))
    assert (union > 0).sum() > 90
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.min() > 0.99, iou.min()

    # The default, folded backbone: the same detections up to rounding (measured: 1.2e-2 px,
    # scores 8.8e-5).
    folded = _ours(tmp_path, tv_model, fold_norm=True)
    assert folded.backbone.fold_norm
    bbox_folded, segm_folded = inference_detector(folded, np.ascontiguousarray(rgb[..., ::-1]))
    got_folded = _sorted(*_flatten(bbox_folded, segm_folded))
    np.testing.assert_array_equal(got_folded[2], want[2])
    np.testing.assert_allclose(got_folded[0], want[0], rtol=0, atol=5e-2)
    np.testing.assert_allclose(got_folded[1], want[1], rtol=0, atol=2e-4)
