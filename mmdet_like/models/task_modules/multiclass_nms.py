"""Class-wise NMS (or Soft-NMS) of one image's detections: the last step of every head that
outputs detections (the RoI box head, single-stage dense heads)."""

import torch

from mmdet_like.ops import batched_nms, soft_nms

NMS_TYPES = ("nms", "soft_nms")


def multiclass_nms(boxes, scores, score_thr, nms_cfg, max_num=-1, valid=None):
    """Class-wise NMS (or Soft-NMS) of one image's detections.

    Args:
        boxes: (n, 4 * C) class-specific boxes or (n, 4) shared by all classes.
        scores: (n, C) object-class scores (background column removed).
        score_thr: candidates scoring at most this are dropped.
        nms_cfg: ``dict(type="nms", iou_thr=0.5)`` or ``dict(type="soft_nms", iou_thr=0.3,
            sigma=0.5, min_score=1e-3, method="linear")`` (``iou_threshold`` accepted for
            ``iou_thr``; no ``type`` is ``"nms"``). Soft-NMS decays the scores of
            overlapping boxes of the same class instead of removing them
            (:func:`mmdet_like.ops.soft_nms`); the returned scores are the decayed ones.
        max_num: keep the ``max_num`` best after NMS (``<= 0``: all).
        valid: optional (n, C) bools; candidates where it is False are dropped too.

    Returns:
        (m, 5) ``[x1, y1, x2, y2, score]`` in descending score order, and (m,) int64 labels.
    """
    num, num_classes = scores.shape
    boxes = boxes.reshape(num, -1, 4).expand(num, num_classes, 4)
    valid = scores > score_thr if valid is None else valid & (scores > score_thr)
    roi_inds, labels = torch.nonzero(valid, as_tuple=True)
    return nms_of_pairs(boxes[roi_inds, labels], scores[roi_inds, labels], labels, nms_cfg,
                        max_num, num_classes)  # fmt: skip


def nms_of_pairs(boxes, scores, labels, nms_cfg, max_num=-1, num_classes=None):
    """Class-wise NMS (or Soft-NMS, see :func:`multiclass_nms`) of (box, class) candidates:
    (m, 4) boxes, (m,) scores, (m,) int64 labels in ``[0, num_classes)`` -> ((k, 5)
    ``[x1, y1, x2, y2, score]`` in descending score order, (k,) labels), the best
    ``max_num`` (``<= 0``: all). ``num_classes``, when known, lets a traced program run one
    NMS per class (:func:`~mmdet_like.ops.batched_nms`)."""
    nms_type = nms_cfg.get("type", "nms")
    if nms_type not in NMS_TYPES:
        raise ValueError(
            f"test_cfg nms: type {nms_type!r} is not one of {NMS_TYPES}; fix the nms dict of "
            "the test config (e.g. test_cfg.rcnn.nms)"
        )
    if nms_type == "soft_nms":
        iou_thr = nms_cfg.get("iou_thr", nms_cfg.get("iou_threshold", 0.3))
        keep, scores = batched_soft_nms(
            boxes, scores, labels, iou_thr, sigma=nms_cfg.get("sigma", 0.5),
            min_score=nms_cfg.get("min_score", 1e-3), method=nms_cfg.get("method", "linear"),
        )  # fmt: skip
        boxes, labels = boxes[keep], labels[keep]
    else:
        iou_thr = nms_cfg.get("iou_thr", nms_cfg.get("iou_threshold", 0.5))
        keep = batched_nms(boxes, scores, labels, iou_thr, num_categories=num_classes)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if max_num > 0:
        boxes, scores, labels = boxes[:max_num], scores[:max_num], labels[:max_num]
    return torch.cat([boxes, scores[:, None]], dim=1), labels


def batched_soft_nms(boxes, scores, idxs, iou_threshold, sigma=0.5, min_score=1e-3,
                     method="linear"):  # fmt: skip
    """Soft-NMS within each category (boxes of different ``idxs`` do not decay each other).

    Each category is moved to its own region of the plane, where its boxes overlap no box of
    another category (IoU 0: no decay in any method), and one Soft-NMS runs on all of them.

    Args:
        boxes: (N, 4); scores: (N,); idxs: (N,) int category index of each box.

    Returns:
        keep (M,) int64 input indices and their (M,) decayed scores, in descending decayed
        score order.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device), scores[:0]
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    dets, keep = soft_nms(
        boxes + offsets[:, None], scores, iou_threshold, sigma=sigma, min_score=min_score,
        method=method,
    )  # fmt: skip
    return keep, dets[:, 4].to(scores.dtype)
