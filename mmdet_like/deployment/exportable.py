"""Detectors as traceable functions of one image tensor, for ``torch.export`` and ONNX.

:class:`ExportableDetector` wraps a built detector (Faster / Mask R-CNN and the other
two-stage detectors with an RPN, RetinaNet / FCOS and the other single-stage detectors) and
runs the detector's own inference code on a single image: the exported program gives the
detections :meth:`BaseDetector.predict` gives (same boxes, scores, labels, order). What the
exported program does not do is what depends on the original image, done outside by
:func:`postprocess` in Python: resizing boxes back to the original image and pasting the
masks into it.

Input and outputs (one image, any size within the export's range):

- ``image``: (1, 3, H, W) float, the test pipeline's resized and normalised image, not
  padded (the graph pads to the detector's ``size_divisor``);
- ``dets``: (n, 5) ``[x1, y1, x2, y2, score]`` in the input image, descending score;
- ``labels``: (n,) int64;
- ``mask_probs`` (Mask R-CNN): (n, M, M) float, each detection's mask probabilities of its
  class on the box (M the mask head's output size, 28).
"""

import torch
from torch import nn

from mmdet_like.models.detectors.base import pad_images
from mmdet_like.models.detectors.single_stage import SingleStageDetector
from mmdet_like.models.detectors.two_stage import TwoStageDetector
from mmdet_like.models.roi_heads.standard_roi_head import StandardRoIHead
from mmdet_like.structures.instance_data import DetDataSample


class ExportError(ValueError):
    """A detector or setting the exporter cannot handle (the message says which and why)."""


def _check_exportable(detector):
    if isinstance(detector, TwoStageDetector):
        if detector.rpn_head is None:
            raise ExportError(
                f"{type(detector).__name__}: a detector without an RPN takes precomputed "
                "proposals; only detectors that find their own boxes export"
            )
        roi_head = detector.roi_head
        if not isinstance(roi_head, StandardRoIHead):
            raise ExportError(
                f"{type(detector).__name__}: its {type(roi_head).__name__} does not export yet "
                "(StandardRoIHead does: Faster / Mask R-CNN, FPN or C4)"
            )
        if getattr(roi_head, "with_keypoint", False):
            raise ExportError(
                f"{type(detector).__name__}: keypoint heads do not export yet (boxes, "
                "labels and masks do)"
            )
        nms_type = (roi_head.test_cfg or {}).get("nms", {}).get("type", "nms")
        if nms_type != "nms":
            raise ExportError(
                f"test_cfg.rcnn.nms.type={nms_type!r}: Soft-NMS has no ONNX operator; export "
                "with nms=dict(type='nms', iou_thr=...) (--cfg-options)"
            )
        return
    if isinstance(detector, SingleStageDetector):
        nms_type = (detector.bbox_head.test_cfg or {}).get("nms", {}).get("type", "nms")
        if nms_type != "nms":
            raise ExportError(
                f"test_cfg.nms.type={nms_type!r}: Soft-NMS has no ONNX operator; export with "
                "nms=dict(type='nms', iou_thr=...) (--cfg-options)"
            )
        return
    raise ExportError(
        f"{type(detector).__name__}: not an exportable detector (two-stage detectors with an "
        "RPN and single-stage detectors export)"
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


class ExportableDetector(nn.Module):
    """``forward(image (1, 3, H, W)) -> (dets (n, 5), labels (n,)[, mask_probs (n, M, M)])``
    for a built detector in eval mode (see the module docstring)."""

    def __init__(self, detector):
        super().__init__()
        _check_exportable(detector)
        self.detector = detector.eval()
        self.with_mask = bool(getattr(detector, "with_mask", False))

    @property
    def output_names(self):
        return ["dets", "labels", "mask_probs"] if self.with_mask else ["dets", "labels"]

    def forward(self, image):
        detector = self.detector
        height, width = image.shape[-2], image.shape[-1]
        meta = image_meta(height, width)
        batch = pad_images(image, detector.size_divisor)
        if isinstance(detector, SingleStageDetector):
            result = detector.predict_instances(batch, [DetDataSample(metainfo=meta)])[0]
            return _dets(result.bboxes, result.scores), result.labels
        feats = detector.extract_feat(batch)
        proposals = detector._rpn_proposals(feats, [meta])
        roi_head = detector.roi_head
        rois = _image_rois(proposals[0].bboxes)
        cls_score, bbox_pred, _ = roi_head._bbox_forward(feats, rois)
        results, input_boxes = roi_head._image_detections(
            roi_head.bbox_head,
            rois,
            cls_score,
            bbox_pred,
            [proposals[0].bboxes.size(0)],
            [meta],
            False,
        )
        result = results[0]
        dets = _dets(result.bboxes, result.scores)
        if not self.with_mask:
            return dets, result.labels
        mask_pred = roi_head._mask_forward(feats, _image_rois(input_boxes[0]))
        return dets, result.labels, roi_head.mask_head.mask_probs(mask_pred, result.labels)


def _dets(boxes, scores):
    return torch.cat([boxes, scores[:, None]], dim=1)


def _image_rois(boxes):
    """(n, 4) boxes of image 0 -> (n, 5) RoIs (``bbox2roi`` of one image, without its
    per-image counts, which ONNX has no operator for)."""
    return torch.cat([boxes.new_zeros((boxes.size(0), 1)), boxes[:, :4]], dim=1)
