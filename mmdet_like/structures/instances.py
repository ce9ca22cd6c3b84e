"""Typed per-image detection results, and their conversion to mmdetection's per-class lists."""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class DetectionResult:
    """Detections of one image.

    Attributes:
        boxes: (N, 4) ``[x1, y1, x2, y2]``.
        scores: (N,).
        labels: (N,) int64 object classes in ``[0, num_classes)``.
        masks: (N, H, W) bool full-image masks, or ``None`` (no mask head).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None

    def __len__(self):
        return self.boxes.size(0)

    def to(self, device):
        masks = None if self.masks is None else self.masks.to(device)
        return DetectionResult(
            self.boxes.to(device), self.scores.to(device), self.labels.to(device), masks
        )


def detection_to_per_class(result, num_classes):
    """mmdetection v1 result format of one image: the one conversion from typed results
    (a :class:`DetectionResult`, an ``InstanceData`` of predictions with ``bboxes``,
    ``scores``, ``labels`` [, ``masks``], or a ``DetDataSample`` holding one as
    ``pred_instances``) to per-class lists.

    Returns:
        ``bbox_results``: list of ``num_classes`` float32 (n_c, 5) arrays
        ``[x1, y1, x2, y2, score]``; with masks, the tuple ``(bbox_results, segm_results)``,
        ``segm_results`` a list over classes of lists of (H, W) bool arrays.
    """
    result = _as_detection_result(result)
    labels = result.labels.detach().long().cpu()
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes].tolist()
    splits = np.cumsum(counts)[:-1]
    dets = torch.cat([result.boxes.detach().float(), result.scores.detach().float()[:, None]], 1)
    dets = dets.cpu()[order].numpy().reshape(-1, 5).astype(np.float32)
    bbox_results = list(np.split(dets, splits))
    if result.masks is None:
        return bbox_results
    masks = result.masks.detach().cpu()[order].numpy().astype(bool)
    segm_results = [list(part) for part in np.split(masks, splits)]
    return bbox_results, segm_results


def _as_detection_result(result):
    if isinstance(result, DetectionResult):
        return result
    pred = getattr(result, "pred_instances", result)  # a DetDataSample, or its instances
    if pred is None or "bboxes" not in pred:
        raise ValueError(
            f"detection_to_per_class: {type(result).__name__} holds no predictions (needs "
            "pred_instances with bboxes, scores and labels)"
        )
    return DetectionResult(pred.bboxes, pred.scores, pred.labels, pred.get("masks"))


def detection_to_instances(result):
    """A :class:`DetectionResult` as prediction ``InstanceData`` (``bboxes``, ``scores``,
    ``labels`` and, with a mask head, ``masks``)."""
    from mmdet_like.structures.instance_data import InstanceData

    pred = InstanceData(bboxes=result.boxes, scores=result.scores, labels=result.labels)
    if result.masks is not None:
        pred.masks = result.masks
    return pred
