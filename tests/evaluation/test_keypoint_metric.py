"""``--eval keypoints``: our COCO keypoint metric against a direct pycocotools ``COCOeval``
(``iouType="keypoints"``) on the same detections, with a custom keypoint set's OKS sigmas
and with COCO person's; the result json; the errors when sigmas are missing."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmdet_like.datasets import CocoDataset
from mmdet_like.evaluation import EvaluationError
from mmdet_like.structures.keypoints import COCO_PERSON_NAMES
from tests.datasets.tiny_data import write_image

SIGMAS = [0.05, 0.08, 0.08]


def _ground_truth(num_images=4, names=("top", "left_end", "right_end"), seed=0):
    rng = np.random.default_rng(seed)
    k = len(names)
    images, anns = [], []
    for i in range(1, num_images + 1):
        images.append(dict(id=i, file_name=f"{i}.png", width=96, height=80))
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 50, 2)
            w, h = rng.uniform(15, 40, 2)
            v = rng.integers(0, 3, k)
            px, py = x + rng.uniform(0, w, k), y + rng.uniform(0, h, k)
            points = np.stack([px * (v > 0), py * (v > 0), v], 1)
            anns.append(dict(id=len(anns) + 1, image_id=i, category_id=1,
                             bbox=[x, y, w, h], area=w * h, iscrowd=0,
                             keypoints=points.reshape(-1).round(2).tolist(),
                             num_keypoints=int((v > 0).sum())))  # fmt: skip
    cats = [dict(id=1, name="thing", keypoints=list(names), skeleton=[[1, 2]])]
    return dict(images=images, annotations=anns, categories=cats)


def _predictions(gt, seed=1):
    """Per image the legacy 3-tuple: noisy copies of its gts plus a false positive."""
    rng = np.random.default_rng(seed)
    k = len(gt["categories"][0]["keypoints"])
    results = []
    for img in gt["images"]:
        boxes, points = [], []
        for ann in (a for a in gt["annotations"] if a["image_id"] == img["id"]):
            x, y, w, h = ann["bbox"]
            boxes.append([x + 1, y, x + w, y + h + 1, rng.uniform(0.3, 1)])
            kp = np.asarray(ann["keypoints"], np.float32).reshape(k, 3)
            noisy = kp[:, :2] + rng.normal(0, 2.0, (k, 2))
            points.append(np.concatenate([noisy, rng.uniform(0, 1, (k, 1))], 1))
        boxes.append([60, 50, 90, 75, 0.2])
        points.append(np.column_stack([rng.uniform(60, 90, k), rng.uniform(50, 75, k),
                                       np.zeros(k)]))  # fmt: skip
        results.append(([np.asarray(boxes, np.float32)], None,
                        [np.asarray(points, np.float32)]))  # fmt: skip
    return results


def _dataset(tmp_path, gt, **kwargs):
    for img in gt["images"]:
        write_image(tmp_path / "img" / img["file_name"], img["width"], img["height"])
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return CocoDataset(str(path), [], img_prefix=str(tmp_path / "img"), test_mode=True, **kwargs)


def _direct_cocoeval(gt_path, results, sigmas):
    dets = []
    for img_id, (boxes, _, points) in zip(range(1, len(results) + 1), results):
        for box, kp in zip(boxes[0], points[0]):
            x1, y1, x2, y2 = box[:4].astype(np.float64).tolist()
            # with the box (as detectron2 writes them): COCOeval's area ranges then use the
            # box's area, not the extent of the keypoints
            dets.append(dict(image_id=img_id, category_id=1, score=float(box[4]),
                             bbox=[x1, y1, x2 - x1, y2 - y1],
                             keypoints=kp.astype(np.float64).reshape(-1).tolist()))  # fmt: skip
    coco_gt = COCO(str(gt_path))
    coco_dt = coco_gt.loadRes(dets)
    coco_eval = COCOeval(coco_gt, coco_dt, "keypoints")
    if sigmas is not None:
        coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval.stats


def test_keypoint_metric_equals_cocoeval(tmp_path):
    gt = _ground_truth()
    ds = _dataset(tmp_path, gt, keypoint_meta=dict(sigmas=SIGMAS))
    results = _predictions(gt)
    prefix = tmp_path / "out" / "res"
    prefix.parent.mkdir()
    metrics = ds.evaluate(results, metric=["bbox", "keypoints"], jsonfile_prefix=str(prefix))
    stats = _direct_cocoeval(tmp_path / "gt.json", results, SIGMAS)
    names = ["mAP", "mAP_50", "mAP_75", "mAP_m", "mAP_l", "AR", "AR_50", "AR_75", "AR_m", "AR_l"]
    for name, value in zip(names, stats):
        assert metrics[f"keypoints_{name}"] == pytest.approx(value, abs=1e-12), name
    assert 0 < metrics["keypoints_mAP"] < 1 and "bbox_mAP" in metrics
    written = json.loads((tmp_path / "out" / "res.keypoints.json").read_text())
    assert len(written) == sum(len(r[0][0]) for r in results)
    assert set(written[0]) >= {"image_id", "category_id", "score", "keypoints", "bbox"}
    assert len(written[0]["keypoints"]) == 9
    # other sigmas, other numbers: the dataset's sigmas reach pycocotools
    wide = ds.evaluate(results, metric="keypoints")  # same sigmas: same numbers
    assert wide["keypoints_mAP"] == metrics["keypoints_mAP"]
    other = _direct_cocoeval(tmp_path / "gt.json", results, [0.2, 0.2, 0.2])
    assert other[0] != pytest.approx(stats[0])


def test_coco_person_sigmas_are_built_in(tmp_path):
    gt = _ground_truth(names=COCO_PERSON_NAMES, seed=3)
    ds = _dataset(tmp_path, gt)
    results = _predictions(gt, seed=4)
    metrics = ds.evaluate(results, metric="keypoints")
    stats = _direct_cocoeval(tmp_path / "gt.json", results, None)  # pycocotools' defaults
    assert metrics["keypoints_mAP"] == pytest.approx(stats[0], abs=1e-12)


def test_keypoints_without_sigmas_or_keypoints_is_refused(tmp_path):
    gt = _ground_truth()
    ds = _dataset(tmp_path, gt)  # a custom set without sigmas
    with pytest.raises(EvaluationError, match="OKS sigmas"):
        ds.evaluate(_predictions(gt), metric="keypoints")
