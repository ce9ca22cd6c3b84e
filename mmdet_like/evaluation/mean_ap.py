"""VOC-style mean average precision on numpy boxes.

Boxes are continuous ``[x1, y1, x2, y2]`` (area ``(x2 - x1) * (y2 - y1)``, no ``+ 1``).
"""

import logging

import numpy as np
from terminaltables import AsciiTable

from mmdet_like.evaluation.predictions import as_predictions, detection_arrays
from mmdet_like.structures.bbox import bbox_overlaps


def log_text(text, logger=None):
    """Print ``text`` (``logger=None``), drop it (``"silent"``) or ``logger.info`` it."""
    if logger == "silent":
        return
    if isinstance(logger, logging.Logger):
        logger.info(text)
    else:
        print(text)


def bbox_overlaps_np(bboxes1, bboxes2, mode="iou"):
    """(n, 4) x (m, 4) boxes -> (n, m) float64 IoU (or IoF: over the area of ``bboxes1``):
    :func:`mmdet_like.structures.bbox_overlaps` in float64, floored at float64's eps."""
    b1 = np.asarray(bboxes1, dtype=np.float64).reshape(-1, 4)
    b2 = np.asarray(bboxes2, dtype=np.float64).reshape(-1, 4)
    return bbox_overlaps(b1, b2, mode=mode, eps=np.finfo(np.float64).eps)


def average_precision(recalls, precisions, mode="area"):
    """AP from a precision/recall curve (both (n,), detections sorted by score).

    ``mode="area"``: area under the monotone (right-maximum) precision envelope (VOC 2010+);
    ``"11points"``: mean of the best precision at recall >= 0, 0.1, ..., 1 (VOC 2007).
    """
    recalls = np.asarray(recalls, dtype=np.float64)
    precisions = np.asarray(precisions, dtype=np.float64)
    if mode == "area":
        mrec = np.concatenate([[0.0], recalls, [1.0]])
        mpre = np.concatenate([[0.0], precisions, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    if mode == "11points":
        ap = 0.0
        for thr in np.linspace(0, 1, 11):
            above = precisions[recalls >= thr]
            ap += (above.max() if above.size else 0.0) / 11
        return float(ap)
    raise ValueError(f"average_precision: mode must be 'area' or '11points', got {mode!r}")


def tpfp(det_bboxes, gt_bboxes, gt_bboxes_ignore=None, iou_thr=0.5):
    """Match one image's detections of one class to its gt boxes (greedy by score).

    Args:
        det_bboxes: (n, 5) ``[x1, y1, x2, y2, score]``.
        gt_bboxes: (m, 4); gt_bboxes_ignore: (k, 4) (VOC difficult / crowd).

    Returns:
        (tp, fp): (n,) float arrays in the input order. A detection whose best match is an
        ignored box counts as neither.
    """
    det_bboxes = np.asarray(det_bboxes, dtype=np.float64).reshape(-1, 5)
    gt = np.asarray(gt_bboxes, dtype=np.float64).reshape(-1, 4)
    ign = np.zeros((0, 4)) if gt_bboxes_ignore is None else np.asarray(gt_bboxes_ignore)
    ign = ign.reshape(-1, 4)
    all_gt = np.concatenate([gt, ign])
    is_ignored = np.concatenate([np.zeros(len(gt), bool), np.ones(len(ign), bool)])
    n = len(det_bboxes)
    tp, fp = np.zeros(n), np.zeros(n)
    if len(all_gt) == 0:
        fp[:] = 1
        return tp, fp
    ious = bbox_overlaps_np(det_bboxes[:, :4], all_gt)
    best = ious.argmax(axis=1)
    best_iou = ious[np.arange(n), best]
    covered = np.zeros(len(all_gt), dtype=bool)
    for i in np.argsort(-det_bboxes[:, 4], kind="stable"):
        if best_iou[i] >= iou_thr:
            j = best[i]
            if is_ignored[j]:
                continue
            if not covered[j]:
                covered[j] = True
                tp[i] = 1
            else:
                fp[i] = 1
        else:
            fp[i] = 1
    return tp, fp


def eval_map(det_results, annotations, iou_thr=0.5, mode="area", num_classes=None):
    """Mean AP over classes.

    Args:
        det_results: per image, its predictions (a predicted sample, its
            ``pred_instances`` with ``bboxes``, ``scores``, ``labels``, or mmdetection's list
            over classes of (n, 5) arrays; see :mod:`mmdet_like.evaluation.predictions`).
        annotations: per image, a dict with ``bboxes`` (m, 4), ``labels`` (m,) and optional
            ``bboxes_ignore`` (k, 4), ``labels_ignore`` (k,).
        num_classes: default: the length of a per-class result, else one more than the
            largest label predicted or annotated.

    Returns:
        (mean_ap, per_class): ``mean_ap`` over classes with at least one gt box;
        ``per_class`` a list of dicts ``num_gts``, ``num_dets``, ``recall`` (final recall),
        ``ap``.
    """
    if len(det_results) != len(annotations):
        raise ValueError(
            f"eval_map: {len(det_results)} results for {len(annotations)} annotated images"
        )
    if num_classes is None:
        num_classes = _num_classes(det_results, annotations)
    # per image: its detections as (n, 5) float64 [x1, y1, x2, y2, score] and labels, in
    # label order (each class's rows in the detector's order)
    images = []
    for pred in as_predictions(det_results, num_classes):
        arrays = detection_arrays(pred)
        rows = np.concatenate([arrays["boxes"], arrays["scores"][:, None]], axis=1)
        images.append((rows.astype(np.float64), arrays["labels"]))
    per_class = []
    for c in range(num_classes):
        tps, fps, scores, num_gts = [], [], [], 0
        for (rows, labels), ann in zip(images, annotations):
            dets = rows[labels == c]
            gt_labels = np.asarray(ann["labels"]).reshape(-1)
            gt = np.asarray(ann["bboxes"]).reshape(-1, 4)[gt_labels == c]
            ign = np.zeros((0, 4))
            if ann.get("bboxes_ignore") is not None and len(ann["bboxes_ignore"]):
                ign_labels = np.asarray(ann["labels_ignore"]).reshape(-1)
                ign = np.asarray(ann["bboxes_ignore"]).reshape(-1, 4)[ign_labels == c]
            num_gts += len(gt)
            tp, fp = tpfp(dets, gt, ign, iou_thr)
            tps.append(tp)
            fps.append(fp)
            scores.append(dets[:, 4])
        scores = np.concatenate(scores)
        order = np.argsort(-scores, kind="stable")
        tp = np.cumsum(np.concatenate(tps)[order])
        fp = np.cumsum(np.concatenate(fps)[order])
        counted = (np.concatenate(tps) + np.concatenate(fps))[order] > 0
        tp, fp = tp[counted], fp[counted]
        recalls = tp / max(num_gts, 1)
        precisions = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_class.append(
            dict(
                num_gts=num_gts,
                num_dets=int(len(scores)),
                recall=float(recalls[-1]) if len(recalls) else 0.0,
                ap=average_precision(recalls, precisions, mode) if num_gts else 0.0,
            )
        )
    with_gt = [r["ap"] for r in per_class if r["num_gts"] > 0]
    mean_ap = float(np.mean(with_gt)) if with_gt else 0.0
    return mean_ap, per_class


def _num_classes(det_results, annotations):
    """The class count of :func:`eval_map`'s inputs when none is given."""
    first = det_results[0] if len(det_results) else None
    if isinstance(first, (list, tuple)):  # mmdetection's per-class lists
        return len(first[0] if isinstance(first, tuple) else first)
    labels = [np.asarray(a["labels"]).reshape(-1) for a in annotations]
    labels += [detection_arrays(p)["labels"] for p in as_predictions(det_results)]
    return int(max((int(x.max()) for x in labels if x.size), default=-1)) + 1


def map_table(mean_ap, per_class, class_names=None):
    """A terminaltables AsciiTable string: class, gts, dets, recall, ap, and the mAP row."""
    names = class_names or [str(i) for i in range(len(per_class))]
    rows = [["class", "gts", "dets", "recall", "ap"]]
    for name, r in zip(names, per_class):
        rows.append([name, r["num_gts"], r["num_dets"], f"{r['recall']:.3f}", f"{r['ap']:.3f}"])
    rows.append(["mAP", "", "", "", f"{mean_ap:.3f}"])
    table = AsciiTable(rows)
    table.inner_footing_row_border = True
    return table.table
