"""Evaluation: COCO (pycocotools), VOC mAP and proposal recall. Reads the predictions'
``pred_instances`` and the ground truth only, never a model."""

from mmdet_like.evaluation.coco_metric import (
    evaluate_coco,
    fast_eval_recall,
    format_results,
    results2json,
)
from mmdet_like.evaluation.mean_ap import (
    average_precision,
    bbox_overlaps_np,
    eval_map,
    map_table,
    tpfp,
)
from mmdet_like.evaluation.metrics import (
    BaseMetric,
    CocoMetric,
    EvaluationError,
    Evaluator,
    RecallMetric,
    VOCMetric,
    build_evaluator,
)
from mmdet_like.evaluation.predictions import as_predictions, detection_arrays
from mmdet_like.evaluation.recall import eval_recalls, print_recall_summary
from mmdet_like.evaluation.voc_metric import evaluate_voc

__all__ = [
    "BaseMetric",
    "CocoMetric",
    "EvaluationError",
    "Evaluator",
    "RecallMetric",
    "VOCMetric",
    "build_evaluator",
    "as_predictions",
    "detection_arrays",
    "average_precision",
    "bbox_overlaps_np",
    "eval_map",
    "eval_recalls",
    "evaluate_coco",
    "evaluate_voc",
    "fast_eval_recall",
    "format_results",
    "map_table",
    "print_recall_summary",
    "results2json",
    "tpfp",
]
