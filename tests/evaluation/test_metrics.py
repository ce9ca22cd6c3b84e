"""Registered metrics and the evaluator: built from ``evaluation=dict(metric=...)``, run on
a dataset's ground truth (not on the dataset class), equal to the metric functions."""

import json

import numpy as np
import pytest

from mmdet_like.evaluation import (
    BaseMetric,
    CocoMetric,
    EvaluationError,
    RecallMetric,
    VOCMetric,
    build_evaluator,
    evaluate_coco,
    evaluate_voc,
)
from mmdet_like.registry import METRICS
from mmdet_like.structures import DatasetGroundTruth

CLASSES = ("a", "b")


def annotations():
    return [
        dict(bboxes=np.array([[4, 4, 20, 20], [30, 30, 50, 60]], np.float32),
             labels=np.array([0, 1]), bboxes_ignore=np.zeros((0, 4), np.float32)),
        dict(bboxes=np.array([[10, 10, 40, 30]], np.float32), labels=np.array([1]),
             bboxes_ignore=np.zeros((0, 4), np.float32)),
    ]  # fmt: skip


def results():
    return [
        [np.array([[4, 5, 20, 21, 0.9], [0, 0, 5, 5, 0.3]], np.float32),
         np.array([[31, 30, 50, 58, 0.8]], np.float32)],
        [np.zeros((0, 5), np.float32), np.array([[12, 10, 40, 32, 0.7]], np.float32)],
    ]  # fmt: skip


def ground_truth(coco=None, cat_ids=None):
    anns = annotations()
    return DatasetGroundTruth(
        img_ids=[1, 2], class_names=CLASSES, get_ann_info=lambda i: anns[i], cat_ids=cat_ids,
        coco=coco, source="test annotations",
    )  # fmt: skip


def coco_file(tmp_path):
    images = [dict(id=i, file_name=f"{i}.png", width=64, height=64) for i in (1, 2)]
    anns = []
    for img_id, ann in zip((1, 2), annotations()):
        for box, label in zip(ann["bboxes"], ann["labels"]):
            x1, y1, x2, y2 = (float(v) for v in box)
            anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=[3, 7][label],
                             bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1),
                             iscrowd=0))  # fmt: skip
    cats = [dict(id=3, name="a"), dict(id=7, name="b")]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return str(path)


def test_names_group_into_one_metric_object_each_with_their_options():
    evaluator = build_evaluator(["mAP", "recall"], iou_thrs=[0.5, 0.75], proposal_nums=(1, 5))
    voc, recall = evaluator.metrics
    assert isinstance(voc, VOCMetric) and isinstance(recall, RecallMetric)
    assert voc.iou_thrs == [0.5, 0.75] and recall.proposal_nums == (1, 5)
    bbox = build_evaluator(["bbox", "segm"], classwise=True).metrics
    assert len(bbox) == 1 and bbox[0].metrics == ["bbox", "segm"] and bbox[0].classwise
    typed = build_evaluator(dict(type="VOCMetric", ap_mode="11points")).metrics[0]
    assert isinstance(typed, VOCMetric) and typed.ap_mode == "11points"


def test_voc_and_recall_metrics_equal_the_functions():
    gt = ground_truth()
    out = build_evaluator("mAP", iou_thrs=[0.5, 0.75])(results(), gt, logger="silent")
    assert out == evaluate_voc(results(), annotations(), CLASSES, [0.5, 0.75], logger="silent")
    assert 0 < out["mAP"] <= 1
    props = [np.concatenate(r) for r in results()]
    recall = build_evaluator("recall", proposal_nums=(1, 10))(props, gt, logger="silent")
    assert recall["AR@10"] == 1.0 and recall["AR@1"] < 1.0


def pred_instances():
    """:func:`results` as a detector predicts them: tensors, the classes interleaved (each
    class's detections in the per-class lists' order)."""
    import torch

    from mmdet_like.structures import InstanceData

    rows = [
        [(4, 5, 20, 21, 0.9, 0), (31, 30, 50, 58, 0.8, 1), (0, 0, 5, 5, 0.3, 0)],
        [(12, 10, 40, 32, 0.7, 1)],
    ]
    preds = []
    for image in rows:
        table = torch.tensor(image, dtype=torch.float32)
        preds.append(InstanceData(bboxes=table[:, :4], scores=table[:, 4],
                                  labels=table[:, 5].long()))  # fmt: skip
    return preds


def test_metrics_read_pred_instances_as_they_come():
    """The numbers of pred_instances (and of predicted samples) are those of mmdetection's
    per-class lists of the same detections; proposals (no labels) for recall."""
    from mmdet_like.structures import DetDataSample, InstanceData

    gt = ground_truth()
    evaluator = build_evaluator("mAP", iou_thrs=[0.5, 0.75])
    expected = evaluator(results(), gt, logger="silent")
    assert evaluator(pred_instances(), gt, logger="silent") == expected
    samples = [DetDataSample(pred_instances=p) for p in pred_instances()]
    assert evaluator(samples, gt, logger="silent") == expected
    proposals = [InstanceData(bboxes=p.bboxes, scores=p.scores) for p in pred_instances()]
    recall = build_evaluator("recall", proposal_nums=(1, 10))
    arrays = [np.concatenate(r) for r in results()]
    assert recall(proposals, gt, logger="silent") == recall(arrays, gt, logger="silent")
    with pytest.raises(ValueError, match="a detection has label 2, the dataset has 2 classes"):
        wrong = pred_instances()
        wrong[0].labels[0] = 2
        evaluator(wrong, gt, logger="silent")


def test_coco_metric_equals_evaluate_coco(tmp_path):
    path = coco_file(tmp_path)
    gt = ground_truth(coco=path, cat_ids=[3, 7])
    out = build_evaluator("bbox")(results(), gt, logger="silent")
    direct = evaluate_coco(path, results(), [1, 2], [3, 7], metric="bbox", logger="silent")
    assert out == direct and out["bbox_mAP"] > 0.3
    assert build_evaluator("bbox")(pred_instances(), gt, logger="silent") == out


def test_errors_name_the_metric_the_option_and_the_fix():
    with pytest.raises(EvaluationError, match="unknown metric 'mAp'. Did you mean 'mAP'.*Known"):
        build_evaluator("mAp")
    with pytest.raises(EvaluationError, match=r"option\(s\) \['classwize'\]"):
        build_evaluator("bbox", classwize=True)
    with pytest.raises(EvaluationError, match="not a COCO annotation file; use metric='mAP'"):
        CocoMetric("bbox")(results(), ground_truth())
    with pytest.raises(EvaluationError, match="1 results for 2 images of test annotations"):
        VOCMetric()(results()[:1], ground_truth())


def test_a_new_metric_is_one_registered_class():
    @METRICS.register(force=True)
    class DetectionCountMetric(BaseMetric):
        names = ("detections",)

        def compute(self, results, ground_truth, logger=None):
            # results: per image, the predictions' InstanceData
            return {"detections": float(sum(len(r) for r in results))}

    out = build_evaluator(["detections", "mAP"])(results(), ground_truth(), logger="silent")
    assert out["detections"] == 4.0 and "mAP" in out


def test_training_builds_the_evaluator_at_start_up(tmp_path):
    """A misspelt metric in ``evaluation`` fails when the hooks are built, not after the
    first epoch; the hook's own keys stay with the hook."""
    from mmdet_like.apis.train import eval_hook_args

    class Dataset:
        cat_ids = None

        def ground_truth(self):
            return ground_truth()

    args = eval_hook_args(dict(evaluation=dict(interval=2, metric="mAP")), Dataset())
    assert args["interval"] == 2 and isinstance(args["evaluator"].metrics[0], VOCMetric)
    with pytest.raises(EvaluationError, match="unknown metric 'bbbox'"):
        eval_hook_args(dict(evaluation=dict(metric="bbbox")), Dataset())
