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

What each family exports is the detector's own: the exporter calls its
:meth:`~mmdet_like.models.detectors.base.BaseDetector.export_spec` (output names, coarsest
stride; an :class:`ExportError` for what does not export, e.g. Soft-NMS, which has no ONNX
operator), :meth:`~mmdet_like.models.detectors.base.BaseDetector.export_forward` (the traced
forward) and, outside the graph,
:meth:`~mmdet_like.models.detectors.base.BaseDetector.export_instances`. Two-stage detectors
run their RPN and their RoI head's ``export_outputs`` (Standard and Cascade RoI heads, FPN
or C4), single-stage ones their head's detections.
"""

from torch import nn

from mmdet_like.models.detectors.base import ExportError, export_image_meta

__all__ = ["ExportError", "ExportableDetector", "coarsest_stride", "image_meta", "output_names"]

image_meta = export_image_meta  # the meta of an input that is its own original


def coarsest_stride(detector):
    """The stride of the detector's coarsest feature level (64 for an RPN on P2-P6, 128 for
    RetinaNet / FCOS on P3-P7)."""
    return detector.export_spec().coarsest_stride


def output_names(detector):
    """The names of the exported graph's outputs for ``detector``: ``dets``, ``labels`` and,
    with such a branch, ``mask_probs`` and ``keypoint_heatmaps``."""
    return list(detector.export_spec().output_names)


class ExportableDetector(nn.Module):
    """``forward(image (1, 3, H, W)) -> (dets (n, 5), labels (n,)[, mask_probs (n, M, M)][,
    keypoint_heatmaps (n, K, S, S)])`` for a built detector in eval mode (see the module
    docstring): the detector's ``export_forward``."""

    def __init__(self, detector):
        super().__init__()
        self.output_names = output_names(detector)  # an ExportError for what does not export
        self.detector = detector.eval()

    def forward(self, image):
        return self.detector.export_forward(image)
