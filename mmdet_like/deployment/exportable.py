"""Detectors as traceable functions of one image tensor, for ``torch.export`` and ONNX.

:class:`ExportableDetector` wraps a built detector (Faster / Mask R-CNN and the other
two-stage detectors with an RPN, RetinaNet / FCOS and the other single-stage detectors) and
runs the detector's own inference code on a single image: the exported program gives the
detections :meth:`BaseDetector.predict` gives (same boxes, scores, labels, order). What the
exported program does not do is done outside by
:func:`~mmdet_like.deployment.export.to_instances` in Python: resizing boxes back to the
original image, pasting the masks into it and decoding keypoint heatmaps.

Input and outputs (one image, any size within the export's range):

- ``image``: (1, 3, H, W) float, the test pipeline's resized and normalised image, not
  padded (the graph pads to the detector's ``size_divisor``);
- ``dets``: (n, 5) ``[x1, y1, x2, y2, score]`` in the input image, descending score;
- ``labels``: (n,) int64;
- ``mask_probs`` (with a mask head): (n, M, M) float, each detection's mask probabilities
  of its class on the box (M the mask head's output size, 28);
- ``keypoint_heatmaps`` (Keypoint R-CNN): (n, K, S, S) logits (S = 56), decoded into
  keypoints by :func:`~mmdet_like.deployment.export.to_instances` (each heatmap is resized
  to its own box's size, which a graph cannot express as one operator).

Two-stage detectors export with their RoI head's ``detect_bboxes`` (Standard and Cascade RoI
heads, FPN or C4), single-stage ones with their head's ``get_bboxes``. Soft-NMS does not
export (no ONNX operator).
"""

import torch
from torch import nn

from mmdet_like.errors import ProjectError
from mmdet_like.models.detectors.base import pad_images
from mmdet_like.models.detectors.single_stage import SingleStageDetector
from mmdet_like.models.detectors.two_stage import TwoStageDetector
from mmdet_like.structures.bbox import bbox2roi
from mmdet_like.structures.instance_data import DetDataSample


class ExportError(ProjectError, ValueError):
    """A detector or setting the exporter cannot handle (the message says which and why)."""


def _check_exportable(detector):
    if isinstance(detector, TwoStageDetector):
        if detector.rpn_head is None:
            raise ExportError(
                f"{type(detector).__name__}: a detector without an RPN takes precomputed "
                "proposals; only detectors that find their own boxes export"
            )
        head_cfg = detector.roi_head.test_cfg or {}
        where = "test_cfg.rcnn"
    elif isinstance(detector, SingleStageDetector):
        head_cfg = detector.bbox_head.test_cfg or {}
        where = "test_cfg"
    else:
        raise ExportError(
            f"{type(detector).__name__}: not an exportable detector (two-stage detectors with "
            "an RPN and single-stage detectors export)"
        )
    nms_type = head_cfg.get("nms", {}).get("type", "nms")
    if nms_type != "nms":
        raise ExportError(
            f"{where}.nms.type={nms_type!r}: Soft-NMS has no ONNX operator; export with "
            f"{where}.nms=dict(type='nms', iou_thr=...) (--cfg-options)"
        )


def coarsest_stride(detector):
    """The stride of the detector's coarsest feature level (64 for an RPN on P2-P6, 128 for
    RetinaNet / FCOS on P3-P7)."""
    head = detector.rpn_head if isinstance(detector, TwoStageDetector) else detector.bbox_head
    generator = getattr(head, "anchor_generator", None)
    if generator is not None:
        return max(max(stride) for stride in generator.strides)
    return max(getattr(head, "strides", [detector.size_divisor]))


def image_meta(height, width):
    """The meta of an input image that is its own original (no resize, no flip)."""
    return dict(
        img_shape=(height, width, 3), ori_shape=(height, width, 3), pad_shape=(height, width, 3),
        scale_factor=1.0, flip=False,
    )  # fmt: skip


def output_names(detector):
    """The names of the exported graph's outputs for ``detector``: ``dets``, ``labels`` and,
    with such a branch, ``mask_probs`` and ``keypoint_heatmaps``."""
    roi_head = getattr(detector, "roi_head", None)
    names = ["dets", "labels"]
    if getattr(roi_head, "with_mask", False):
        names.append("mask_probs")
    if getattr(roi_head, "with_keypoint", False):
        names.append("keypoint_heatmaps")
    return names


class ExportableDetector(nn.Module):
    """``forward(image (1, 3, H, W)) -> (dets (n, 5), labels (n,)[, mask_probs (n, M, M)][,
    keypoint_heatmaps (n, K, S, S)])`` for a built detector in eval mode (see the module
    docstring)."""

    def __init__(self, detector):
        super().__init__()
        _check_exportable(detector)
        self.detector = detector.eval()
        self.output_names = output_names(detector)

    def forward(self, image):
        detector = self.detector
        height, width = image.shape[-2], image.shape[-1]
        meta = image_meta(height, width)
        batch = pad_images(image, detector.size_divisor)
        if detector.channels_last_inference and image.device.type == "cpu":
            # as BaseDetector.predict: oneDNN's channels-last convolutions (a torch.export
            # program keeps the layout; ONNX has none and ignores it)
            batch = batch.contiguous(memory_format=torch.channels_last)
        if isinstance(detector, SingleStageDetector):
            result = detector.predict_instances(batch, [DetDataSample(metainfo=meta)])[0]
            return _dets(result.bboxes, result.scores), result.labels
        feats = detector.extract_feat(batch)
        proposals = detector._rpn_proposals(feats, [meta])
        roi_head = detector.roi_head
        results, input_boxes = roi_head.detect_bboxes(feats, proposals, [meta])
        result = results[0]
        outputs = [_dets(result.bboxes, result.scores), result.labels]
        rois = bbox2roi(input_boxes)
        if "mask_probs" in self.output_names:
            mask_pred = roi_head._mask_forward(feats, rois)
            outputs.append(roi_head.mask_head.mask_probs(mask_pred, result.labels))
        if "keypoint_heatmaps" in self.output_names:
            # decoding (a resize to each box's own size) happens outside: to_instances
            outputs.append(roi_head.keypoint_head(roi_head.keypoint_roi_extractor(feats, rois)))
        return tuple(outputs)


def _dets(boxes, scores):
    return torch.cat([boxes, scores[:, None]], dim=1)
