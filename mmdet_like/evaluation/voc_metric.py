"""VOC evaluation: mAP at one or more IoU thresholds with a per-class table."""

import numpy as np

from mmdet_like.evaluation.mean_ap import eval_map, log_text, map_table


def evaluate_voc(results, annotations, class_names, iou_thrs=(0.5,), mode="area", logger=None):
    """VOC mAP.

    Args:
        results: per image, its predictions (a predicted sample, its ``pred_instances``,
            or mmdetection's list over classes of (n, 5) ``[x1, y1, x2, y2, score]``; see
            :mod:`mmdet_like.evaluation.predictions`).
        annotations: per image, dicts as from ``dataset.get_ann_info`` (ignore boxes are
            neither true nor false positives).
        iou_thrs: one float or several; ``mode``: ``"area"`` or ``"11points"``.

    Returns:
        dict: ``AP50`` (``AP75``, ...) per threshold and ``mAP``, their mean.
    """
    thrs = [iou_thrs] if isinstance(iou_thrs, float) else list(iou_thrs)
    out, maps = {}, []
    for thr in thrs:
        mean_ap, per_class = eval_map(results, annotations, thr, mode, len(class_names))
        log_text(f"IoU {thr:.2f} ({mode}):\n" + map_table(mean_ap, per_class, class_names), logger)
        out[f"AP{int(round(thr * 100))}"] = mean_ap
        maps.append(mean_ap)
    out["mAP"] = float(np.mean(maps))
    return out
