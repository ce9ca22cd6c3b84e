"""What the metrics read: per image, the detector's ``pred_instances``.

Every metric function takes per image a predicted :class:`DetDataSample`, its
``pred_instances`` (an :class:`InstanceData`: ``bboxes``, ``scores``, ``labels`` [,
``masks``] [, ``keypoints``, ``keypoint_scores``]; an RPN's without ``labels``) or a result
in mmdetection's per-class format (a ``results.pkl``), which
:func:`~mmdet_like.structures.instances.pred_instances_of` turns into the former at the
entry (:func:`as_predictions`). Inside, detections are read as numpy arrays in label order
(:func:`detection_arrays`): class by class, each class in the detector's order, the order
of mmdetection's per-class lists, so the COCO and VOC numbers are those of those lists.
"""

import numpy as np
import torch

from mmdet_like.structures.instances import pred_instances_of


def as_predictions(results, num_classes=None):
    """Per-image results -> per-image prediction :class:`InstanceData` (see the module
    docstring). ``num_classes``: a result in the per-class format must have one entry per
    class, and no label may reach it."""
    predictions = []
    for result in results:
        if num_classes and _is_per_class(result) and len(_per_class_boxes(result)) != num_classes:
            raise ValueError(
                f"a result has boxes for {len(_per_class_boxes(result))} classes, the dataset "
                f"has {num_classes}"
            )
        pred = pred_instances_of(result)
        if num_classes and "labels" in pred and len(pred):
            top = int(_numpy(pred.labels).max())
            if top >= num_classes:
                raise ValueError(
                    f"a detection has label {top}, the dataset has {num_classes} classes"
                )
        predictions.append(pred)
    return predictions


def _is_per_class(result):
    return isinstance(result, (list, tuple))


def _per_class_boxes(result):
    return result[0] if isinstance(result, tuple) else result


def _numpy(value):
    """A tensor (any device; bfloat16 as float32) or array as a numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    return np.asarray(value)


def is_proposals(pred):
    """Class-agnostic proposals (an RPN's): predictions without ``labels``."""
    return "labels" not in pred


def detection_arrays(pred, with_masks=False):
    """One image's detections as numpy arrays in label order (see the module docstring).

    Returns:
        dict: ``boxes`` (n, 4), ``scores`` (n,), ``labels`` (n,) int64, ``masks`` (with
        ``with_masks`` and masks predicted: a list of n RLE dicts or (H, W) bool arrays; else
        ``None``) and ``keypoints`` ((n, K, 3) ``[x, y, score]``, or ``None``).
    """
    labels = _numpy(pred.labels).astype(np.int64).reshape(-1)
    order = np.argsort(labels, kind="stable")
    out = dict(
        boxes=_numpy(pred.bboxes).reshape(-1, 4)[order],
        scores=_numpy(pred.scores).reshape(-1)[order],
        labels=labels[order],
        masks=None,
        keypoints=None,
    )
    masks = pred.get("masks") if with_masks else None
    if masks is not None:
        if isinstance(masks, (torch.Tensor, np.ndarray)):
            out["masks"] = list(_numpy(masks)[order].astype(bool))
        else:  # RLE dicts or (H, W) arrays, one per detection
            out["masks"] = [masks[i] for i in order.tolist()]
    if pred.get("keypoints") is not None:
        points = _numpy(pred.keypoints)[order]
        scores = _numpy(pred.keypoint_scores)[order]
        out["keypoints"] = np.concatenate([points, scores[..., None]], axis=-1)
    return out


def box_score_rows(pred):
    """(n, 5) ``[x1, y1, x2, y2, score]`` of one image's predictions: proposals in their
    order, detections in label order; (n, 4) for proposals without scores."""
    if is_proposals(pred):
        boxes = _numpy(pred.bboxes).reshape(-1, 4)
        if pred.get("scores") is None:
            return boxes
        return np.concatenate([boxes, _numpy(pred.scores).reshape(-1, 1)], axis=1)
    arrays = detection_arrays(pred)
    return np.concatenate([arrays["boxes"], arrays["scores"][:, None]], axis=1)
