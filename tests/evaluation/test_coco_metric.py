"""Our COCO evaluation must give pycocotools' own numbers on detections we did not make."""

import contextlib
import importlib.util
import io
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmdet_like.datasets import CocoDataset
from mmdet_like.evaluation import evaluate_coco, format_results

SIZES = [(64, 48), (80, 60), (50, 70), (96, 64)]  # (w, h)
CATS = [dict(id=2, name="a"), dict(id=5, name="b"), dict(id=9, name="c")]


def _ground_truth(rng):
    images, anns = [], []
    for i, (w, h) in enumerate(SIZES):
        images.append(dict(id=100 + i, file_name=f"{i}.png", width=w, height=h))
        for _ in range(rng.integers(2, 6)):
            bw, bh = rng.integers(4, w // 2), rng.integers(4, h // 2)
            x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
            poly = [x, y, x + bw, y, x + bw, y + bh, x + bw // 2, y + bh + 0, x, y + bh]
            anns.append(
                dict(
                    id=len(anns) + 1, image_id=100 + i, category_id=int(rng.choice([2, 5, 9])),
                    bbox=[int(x), int(y), int(bw), int(bh)], area=float(bw * bh),
                    iscrowd=int(rng.random() < 0.1), segmentation=[[float(v) for v in poly]],
                )
            )  # fmt: skip
    return dict(images=images, annotations=anns, categories=CATS)


def _detections(gt, rng):
    """Perturbed copies of the gt boxes (quarter pixels: exact in float32), some false
    positives, distinct scores; masks as RLE of the perturbed box."""
    dets, scores = [], rng.permutation(4096)[: 3 * len(gt["annotations"]) + 8] / 4096 + 1 / 8192
    sizes = {img["id"]: (img["width"], img["height"]) for img in gt["images"]}
    k = 0
    items = [(a["image_id"], a["category_id"], a["bbox"]) for a in gt["annotations"]]
    items += [(100 + int(rng.integers(4)), int(rng.choice([2, 5, 9])), [5, 5, 10, 12])] * 3
    for img_id, cat_id, (x, y, w, h) in items:
        for _ in range(int(rng.integers(0, 3))):
            dx, dy, dw, dh = rng.integers(-8, 9, size=4) / 4
            box = [x + dx, y + dy, max(w + dw, 1.0), max(h + dh, 1.0)]
            W, H = sizes[img_id]
            mask = np.zeros((H, W), dtype=np.uint8)
            x1, y1 = int(max(box[0], 0)), int(max(box[1], 0))
            mask[y1 : int(box[1] + box[3]), x1 : int(box[0] + box[2])] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            dets.append(dict(image_id=img_id, category_id=cat_id, bbox=[float(v) for v in box],
                             score=float(scores[k]), segmentation=rle))  # fmt: skip
            k += 1
    return dets


def _to_results(dets, img_ids, cat_ids):
    """COCO result json -> our per-image results ((bbox, segm) tuples)."""
    results = []
    for img_id in img_ids:
        bbox = [[] for _ in cat_ids]
        segm = [[] for _ in cat_ids]
        for d in dets:
            if d["image_id"] == img_id:
                label = cat_ids.index(d["category_id"])
                x, y, w, h = d["bbox"]
                bbox[label].append([x, y, x + w, y + h, d["score"]])
                segm[label].append(d["segmentation"])
        bbox = [np.array(b, dtype=np.float32).reshape(-1, 5) for b in bbox]
        results.append((bbox, segm))
    return results


def _direct(gt_file, dets, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        dt = coco.loadRes(dets)
        e = COCOeval(coco, dt, iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


@pytest.fixture(params=[0, 1, 2])
def coco_case(tmp_path, request):
    rng = np.random.default_rng(request.param)
    gt = _ground_truth(rng)
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(gt))
    dets = _detections(gt, rng)
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    (tmp_path / "imgs").mkdir()
    return gt_file, tmp_path / "dets.json", tmp_path


NAMES = ["mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l",
         "AR@1", "AR@10", "AR@100", "AR_s@100", "AR_m@100", "AR_l@100"]  # fmt: skip


def test_equal_to_direct_cocoeval(coco_case):
    gt_file, det_file, root = coco_case
    dets = json.loads(det_file.read_text())
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(root / "imgs"), test_mode=True)
    results = _to_results(dets, ds.img_ids.tolist(), ds.cat_ids)
    ours = ds.evaluate(results, metric=["bbox", "segm"], logger="silent")
    for iou_type in ("bbox", "segm"):
        expected = _direct(gt_file, dets, iou_type)
        got = [ours[f"{iou_type}_{n}"] for n in NAMES]
        assert got == [float(v) for v in expected], iou_type
    assert 0 < ours["bbox_mAP"] < 1


def _to_pred_instances(dets, img_ids, cat_ids, bitmaps):
    """The same detections as :func:`_to_results`, as a detector predicts them: per image
    an InstanceData in the json's order (classes interleaved), masks as RLE dicts or, with
    ``bitmaps``, an (n, H, W) bool tensor."""
    import torch

    from mmdet_like.structures import InstanceData

    preds = []
    for img_id in img_ids:
        mine = [d for d in dets if d["image_id"] == img_id]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)]
        pred = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor([d["score"] for d in mine], dtype=torch.float32),
            labels=torch.tensor([cat_ids.index(d["category_id"]) for d in mine]).long(),
        )
        rles = [d["segmentation"] for d in mine]
        if bitmaps and rles:
            pred.masks = torch.from_numpy(
                np.stack([mask_utils.decode(r) for r in rles]).astype(bool)
            )
        elif bitmaps:
            size = rles and rles[0]["size"] or [1, 1]
            pred.masks = torch.zeros((0, *size), dtype=torch.bool)
        else:
            pred.masks = rles
        preds.append(pred)
    return preds


@pytest.mark.parametrize("bitmaps", [False, True])
def test_pred_instances_give_the_numbers_of_the_per_class_lists(coco_case, bitmaps):
    """The metrics read pred_instances as the detector gives them (classes interleaved,
    masks as RLE or bool tensors): the same COCO numbers as the per-class lists."""
    from mmdet_like.structures import DetDataSample

    gt_file, det_file, root = coco_case
    dets = json.loads(det_file.read_text())
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(root / "imgs"), test_mode=True)
    img_ids = ds.img_ids.tolist()
    legacy = ds.evaluate(_to_results(dets, img_ids, ds.cat_ids), metric=["bbox", "segm"],
                         logger="silent")  # fmt: skip
    preds = _to_pred_instances(dets, img_ids, ds.cat_ids, bitmaps)
    samples = [DetDataSample(pred_instances=p) for p in preds]
    assert ds.evaluate(samples, metric=["bbox", "segm"], logger="silent") == legacy


def test_format_results_writes_coco_json(coco_case, tmp_path):
    gt_file, det_file, root = coco_case
    dets = json.loads(det_file.read_text())
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(root / "imgs"), test_mode=True)
    results = _to_results(dets, ds.img_ids.tolist(), ds.cat_ids)
    files, tmp = ds.format_results(results, jsonfile_prefix=str(tmp_path / "out"))
    assert tmp is None
    assert files == {
        "bbox": str(tmp_path / "out.bbox.json"),
        "segm": str(tmp_path / "out.segm.json"),
    }
    written = json.loads(open(files["bbox"]).read())
    key = lambda d: (d["image_id"], d["score"])  # noqa: E731
    for ours, theirs in zip(sorted(written, key=key), sorted(dets, key=key)):
        assert ours["bbox"] == theirs["bbox"] and ours["category_id"] == theirs["category_id"]
    segm = json.loads(open(files["segm"]).read())
    assert all(isinstance(d["segmentation"]["counts"], str) for d in segm)


def test_classwise_table_and_iou_thrs(coco_case, capsys):
    gt_file, det_file, root = coco_case
    dets = json.loads(det_file.read_text())
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(root / "imgs"), test_mode=True)
    results = _to_results(dets, ds.img_ids.tolist(), ds.cat_ids)
    out = ds.evaluate(results, metric="bbox", classwise=True, iou_thrs=[0.5])
    printed = capsys.readouterr().out
    assert "| category |" in printed and "| b " in printed
    assert out["bbox_mAP"] == out["bbox_mAP_50"]


def _proposals(ds, dets):
    """The detections of each image of ``ds`` as one (n, 5) proposal array."""
    props = []
    for img_id in ds.img_ids.tolist():
        rows = [[*d["bbox"][:2], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3],
                 d["score"]] for d in dets if d["image_id"] == img_id]  # fmt: skip
        props.append(np.array(rows, dtype=np.float32).reshape(-1, 5))
    return props


def test_proposal_metrics(coco_case):
    gt_file, det_file, root = coco_case
    dets = json.loads(det_file.read_text())
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(root / "imgs"), test_mode=True)
    props = _proposals(ds, dets)
    out = ds.evaluate(props, metric=["proposal", "proposal_fast"], proposal_nums=(1, 5, 100),
                      logger="silent")  # fmt: skip
    assert set(out) == {"AR@1", "AR@5", "AR@100", "AR_s@100", "AR_m@100", "AR_l@100"}
    # direct class-agnostic COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        e = COCOeval(coco, coco.loadRes([dict(d, category_id=1) for d in dets]), "bbox")
        e.params.useCats = 0
        e.params.maxDets = [1, 5, 100]
        e.evaluate()
        e.accumulate()
        e.summarize()
    # keys collide between proposal (COCOeval) and proposal_fast; evaluate separately
    coco_only = ds.evaluate(props, metric="proposal", proposal_nums=(1, 5, 100), logger="silent")
    assert [coco_only["AR@1"], coco_only["AR@5"], coco_only["AR@100"]] == [
        float(v) for v in e.stats[6:9]
    ]
    fast = ds.evaluate(props, metric="proposal_fast", proposal_nums=(1, 5, 100), logger="silent")
    assert 0 < fast["AR@1"] <= fast["AR@5"] <= fast["AR@100"] <= 1


def test_unknown_metric_and_result_count(coco_case):
    gt_file, _, root = coco_case
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(root / "imgs"), test_mode=True)
    empty = [[np.zeros((0, 5), np.float32)] * 3 for _ in range(len(ds))]
    with pytest.raises(KeyError, match="not supported"):
        evaluate_coco(str(gt_file), empty, ds.img_ids, ds.cat_ids, metric="pose")
    with pytest.raises(KeyError, match="'keypoints' needs keypoint results, got bbox results"):
        evaluate_coco(str(gt_file), empty, ds.img_ids, ds.cat_ids, metric="keypoints")
    with pytest.raises(ValueError, match="results for"):
        ds.evaluate(empty[:1])
    files, tmp = format_results(empty, ds.img_ids, ds.cat_ids)
    assert json.loads(open(files["bbox"]).read()) == []
    tmp.cleanup()


@pytest.mark.skipif(
    importlib.util.find_spec("faster_coco_eval") is None, reason="faster-coco-eval not installed"
)
def test_faster_coco_eval_backend_matches(coco_case):
    gt_file, det_file, root = coco_case
    dets = json.loads(det_file.read_text())
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(root / "imgs"), test_mode=True)
    results = _to_results(dets, ds.img_ids.tolist(), ds.cat_ids)
    ref = ds.evaluate(results, metric="bbox", logger="silent")
    fast = ds.evaluate(results, metric="bbox", logger="silent", backend="faster_coco_eval")
    for key, value in ref.items():
        assert fast[key] == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("group_dets", [1, 7])
def test_evaluation_by_category_groups_equals_cocoeval(coco_case, iou_type, group_dets):
    """Evaluating and accumulating a few categories at a time (to hold fewer per-image tables)
    gives exactly pycocotools' own precision, recall and scores arrays."""
    from mmdet_like.evaluation.coco_metric import _category_groups, _evaluate_by_category_groups

    gt_file, det_file, _ = coco_case
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        ref = COCOeval(coco, coco.loadRes(json.loads(det_file.read_text())), iou_type)
        ref.evaluate()
        ref.accumulate()
        ours = COCOeval(coco, coco.loadRes(json.loads(det_file.read_text())), iou_type)
        assert len(_category_groups(ours, group_dets)) > 1
        _evaluate_by_category_groups(ours, max_dets=group_dets)
    assert ours.eval["counts"] == ref.eval["counts"]
    for key in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(ours.eval[key], ref.eval[key], err_msg=key)
    assert ours.params.catIds == ref.params.catIds


def test_classwise_table_names_rows_by_category_id_not_label_order(tmp_path, capsys):
    """With ``classes=`` not in id order, each class's AP is printed under its own name
    (pycocotools' class axis is in sorted id order, the labels are in ``classes`` order)."""
    images = [dict(id=1, file_name="0.png", width=64, height=64)]
    anns = [
        dict(id=1, image_id=1, category_id=2, bbox=[4, 4, 20, 20], area=400.0, iscrowd=0),
        dict(id=2, image_id=1, category_id=9, bbox=[30, 30, 20, 20], area=400.0, iscrowd=0),
    ]
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(dict(images=images, annotations=anns, categories=CATS)))
    (tmp_path / "imgs").mkdir()
    # labels: 0 = "c" (id 9), 1 = "a" (id 2), 2 = "b" (id 5)
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(tmp_path / "imgs"),
                     test_mode=True, classes=["c", "a", "b"])  # fmt: skip
    assert ds.cat_ids == [9, 2, 5]
    # "c" found exactly, "a" missed (a false positive elsewhere), "b" has no ground truth
    det = [
        np.array([[30, 30, 50, 50, 0.9]], np.float32),
        np.array([[0, 40, 10, 50, 0.8]], np.float32),
        np.zeros((0, 5), np.float32),
    ]
    ds.evaluate([det], metric="bbox", classwise=True)
    rows = {
        cells[1].strip(): cells[2].strip()
        for line in capsys.readouterr().out.splitlines()
        if (cells := line.split("|")) and len(cells) == 4 and cells[1].strip() in "abc"
    }
    assert rows == {"c": "1.000", "a": "0.000", "b": "nan"}


@pytest.mark.parametrize("nums", [(5,), (1, 100), (1, 2, 5, 100)])
def test_proposal_metric_with_any_number_of_proposal_nums(coco_case, nums):
    """AR at each of one, two or four proposal counts equals a direct class-agnostic
    COCOeval's recall at that count (its summarize() needs exactly three counts)."""
    gt_file, det_file, root = coco_case
    dets = json.loads(det_file.read_text())
    ds = CocoDataset(str(gt_file), pipeline=[], img_prefix=str(root / "imgs"), test_mode=True)
    props = _proposals(ds, dets)
    out = ds.evaluate(props, metric="proposal", proposal_nums=nums, logger="silent")
    assert set(out) == {f"AR@{n}" for n in nums} | {f"AR_{s}@{nums[-1]}" for s in "sml"}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        for num in nums:
            e = COCOeval(coco, coco.loadRes([dict(d, category_id=1) for d in dets]), "bbox")
            e.params.useCats = 0
            e.params.maxDets = [num] * 3  # summarize()'s AR@maxDets[2] is then AR@num
            e.evaluate()
            e.accumulate()
            e.summarize()
            assert out[f"AR@{num}"] == float(e.stats[8]), num
            if num == nums[-1]:
                assert [out[f"AR_{s}@{num}"] for s in "sml"] == [float(v) for v in e.stats[9:]]


def test_coco_metric_uses_only_the_public_pycocotools_api():
    """No private COCOeval attributes (``_prepare``, ``_paramsEval``, ``_gts``...): they
    change between pycocotools releases."""
    import inspect
    import re

    from mmdet_like.evaluation import coco_metric

    source = inspect.getsource(coco_metric)
    assert not re.findall(r"\.(_prepare|_paramsEval|_gts|_dts|_summarize)\b", source)


def test_coco_detections_of_pred_instances_equal_those_of_the_per_class_lists():
    """Boxes, masks and keypoints, an image without detections among them: the result
    lists of pred_instances (masks as a bool tensor), of the evaluation hooks' compacted
    samples (masks as RLE) and of the per-class lists are the same, entry for entry."""
    import torch

    from mmdet_like.evaluation.coco_metric import coco_detections
    from mmdet_like.structures import (
        DetDataSample,
        InstanceData,
        compact_prediction,
        to_legacy_result,
    )

    gen = torch.Generator().manual_seed(1)
    preds = []
    for n in (5, 0, 3):
        preds.append(InstanceData(
            bboxes=torch.rand(n, 4, generator=gen) * 50, scores=torch.rand(n, generator=gen),
            labels=torch.randint(0, 3, (n,), generator=gen),
            masks=torch.rand(n, 8, 9, generator=gen) > 0.5,
            keypoints=torch.rand(n, 4, 2, generator=gen) * 50,
            keypoint_scores=torch.rand(n, 4, generator=gen),
        ))  # fmt: skip
    legacy = [to_legacy_result(p, 3) for p in preds]
    compact = [compact_prediction(DetDataSample(pred_instances=p)) for p in preds]
    for kind in ("bbox", "segm", "keypoints"):
        expected = coco_detections(legacy, [1, 2, 3], [5, 6, 7], kind)
        assert len(expected) == 8
        assert coco_detections(preds, [1, 2, 3], [5, 6, 7], kind) == expected, kind
        assert coco_detections(compact, [1, 2, 3], [5, 6, 7], kind) == expected, kind
