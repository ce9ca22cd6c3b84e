"""COCO evaluation through pycocotools (or faster-coco-eval when installed).

Results per image: a predicted data sample or its ``pred_instances`` (``bboxes``,
``scores``, ``labels`` [, ``masks``: an (n, H, W) bool tensor or n RLE dicts] [,
``keypoints`` (n, K, 2), ``keypoint_scores`` (n, K)]; proposals: ``bboxes``, ``scores``), or
mmdetection's per-class result of the image (a ``results.pkl``), read as the former (see
:mod:`mmdet_like.evaluation.predictions`).
"""

import contextlib
import copy
import datetime
import io
import json
import os.path as osp
import tempfile
import warnings

import numpy as np
from terminaltables import AsciiTable

from mmdet_like.evaluation.mean_ap import log_text
from mmdet_like.evaluation.predictions import (
    as_predictions,
    box_score_rows,
    detection_arrays,
    is_proposals,
)
from mmdet_like.evaluation.recall import eval_recalls
from mmdet_like.structures.bbox import bbox_xyxy_to_xywh
from mmdet_like.structures.mask import bitmap_to_rle

METRICS = ("bbox", "segm", "keypoints", "proposal", "proposal_fast")
BACKENDS = ("pycocotools", "faster_coco_eval")
SUMMARY_NAMES = (
    "mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l",
    "AR@1", "AR@10", "AR@100", "AR_s@100", "AR_m@100", "AR_l@100",
)  # fmt: skip


def _rle(mask):
    """A mask (RLE dict or (H, W) array) as an RLE dict with str counts (JSON-ready)."""
    if not isinstance(mask, dict):
        return bitmap_to_rle(np.asarray(mask))
    rle = dict(mask)
    if isinstance(rle["counts"], bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


# keypoints' summary lines (COCOeval.summarize with iouType="keypoints")
KEYPOINT_SUMMARY_NAMES = (
    "mAP", "mAP_50", "mAP_75", "mAP_m", "mAP_l", "AR", "AR_50", "AR_75", "AR_m", "AR_l",
)  # fmt: skip


def _result_kind(predictions):
    """What the first image's predictions hold: ``proposal`` (no labels), ``bbox``,
    ``segm`` (masks), ``keypoints`` or ``segm_keypoints``."""
    first = predictions[0] if len(predictions) else None
    if first is None:
        return "bbox"
    if is_proposals(first):
        return "proposal"
    masks, keypoints = first.get("masks") is not None, first.get("keypoints") is not None
    if keypoints:
        return "segm_keypoints" if masks else "keypoints"
    return "segm" if masks else "bbox"


def _result_files(kind):
    """The COCO result lists that results of ``kind`` give."""
    return {
        "proposal": ("proposal",),
        "segm": ("bbox", "segm"),
        "keypoints": ("bbox", "keypoints"),
        "segm_keypoints": ("bbox", "segm", "keypoints"),
    }.get(kind, ("bbox",))


def _xywh_rows(boxes):
    """(n, >=4) boxes ``[x1, y1, x2, y2, ...]`` -> n ``[x, y, w, h]`` lists of python floats
    (float32 -> float64 is exact; the width and height are float64 differences)."""
    return bbox_xyxy_to_xywh(boxes[:, :4].astype(np.float64)).tolist()


def coco_detections(results, img_ids, cat_ids, kind="bbox"):
    """One COCO result list (``loadRes`` input) of ``results`` (see the module docstring).

    Args:
        kind: ``"bbox"`` (``image_id``, ``bbox`` as ``[x, y, w, h]``, ``score``,
            ``category_id``), ``"segm"`` (the same plus ``segmentation``, an RLE with str
            counts; needs masks), ``"keypoints"`` (the box's fields plus ``keypoints``,
            ``[x1, y1, s1, ...]`` with each keypoint's score in the third place, which
            COCO's evaluation does not read; needs keypoints) or ``"proposal"``
            (``category_id`` 1; needs proposals).

    Only this list is built (not the other kinds), one dict per detection, class by class
    within an image; image and category ids are shared int objects.
    """
    if kind not in ("bbox", "segm", "keypoints", "proposal"):
        raise ValueError(
            f"coco_detections: kind must be bbox, segm, keypoints or proposal, got {kind!r}"
        )
    predictions = as_predictions(results, len(cat_ids))
    result_kind = _result_kind(predictions)
    if kind not in _result_files(result_kind):
        raise ValueError(f"coco_detections: {result_kind} results have no {kind!r} detections")
    dets = []
    if kind == "proposal":
        for img_id, pred in zip(img_ids, predictions):
            img_id = int(img_id)
            props = box_score_rows(pred)
            for row, score in zip(_xywh_rows(props), props[:, 4].tolist()):
                dets.append(dict(image_id=img_id, bbox=row, score=score, category_id=1))
        return dets
    cat_ids = [int(c) for c in cat_ids]
    for img_id, pred in zip(img_ids, predictions):
        img_id = int(img_id)
        arrays = detection_arrays(pred, with_masks=kind == "segm")
        boxes, labels = arrays["boxes"], arrays["labels"].tolist()
        rows = zip(_xywh_rows(boxes), arrays["scores"].tolist(), labels)
        if kind == "bbox":
            for row, score, label in rows:
                dets.append(dict(image_id=img_id, bbox=row, score=score,
                                 category_id=cat_ids[label]))  # fmt: skip
        elif kind == "keypoints":
            points = arrays["keypoints"].astype(np.float64)
            points = points.reshape(len(boxes), points.size // max(len(boxes), 1)).tolist()
            for (row, score, label), flat in zip(rows, points):
                dets.append(dict(image_id=img_id, bbox=row, score=score,
                                 category_id=cat_ids[label], keypoints=flat))  # fmt: skip
        else:
            masks = arrays["masks"]
            for j, (row, score, label) in enumerate(rows):
                dets.append(dict(image_id=img_id, bbox=row, score=score,
                                 category_id=cat_ids[label],
                                 segmentation=_rle(masks[j])))  # fmt: skip
    return dets


def results2json(results, img_ids, cat_ids):
    """Results -> dict of COCO result lists: ``bbox`` (and ``segm``) or ``proposal``."""
    predictions = as_predictions(results, len(cat_ids))
    return {
        kind: coco_detections(predictions, img_ids, cat_ids, kind)
        for kind in _result_files(_result_kind(predictions))
    }


def _dump_list(items, path, chunk=10000):
    """``json.dump(items, open(path, "w"))`` through the C encoder, ``chunk`` items at a time
    (the pure-Python encoder that ``json.dump`` uses is several times slower)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for start in range(0, len(items), chunk):
            if start:
                f.write(", ")
            f.write(json.dumps(items[start : start + chunk])[1:-1])
        f.write("]")


def format_results(results, img_ids, cat_ids, jsonfile_prefix=None):
    """Write ``<prefix>.bbox.json`` (``.segm.json``, ``.proposal.json``).

    Returns:
        (files, tmp_dir): metric -> path, and the ``TemporaryDirectory`` used when no prefix
        was given (``None`` otherwise; call ``.cleanup()`` when done).
    """
    if len(results) != len(img_ids):
        raise ValueError(f"format_results: {len(results)} results for {len(img_ids)} images")
    results = as_predictions(results, len(cat_ids))
    tmp_dir = None
    if jsonfile_prefix is None:
        tmp_dir = tempfile.TemporaryDirectory()
        jsonfile_prefix = osp.join(tmp_dir.name, "results")
    files = {}
    for kind in _result_files(_result_kind(results)):  # one list in memory at a time
        files[kind] = f"{jsonfile_prefix}.{kind}.json"
        _dump_list(coco_detections(results, img_ids, cat_ids, kind), files[kind])
    return files, tmp_dir


def fast_eval_recall(results, gt_bboxes, proposal_nums=(100, 300, 1000), iou_thrs=None):
    """Average recall (mean over IoU 0.5:0.95 by default) of proposals or of all detections.

    Returns:
        (len(proposal_nums),) float64.
    """
    thrs = np.linspace(0.5, 0.95, 10) if iou_thrs is None else np.asarray(iou_thrs)
    proposals = [box_score_rows(pred) for pred in as_predictions(results)]
    return eval_recalls(gt_bboxes, proposals, proposal_nums, thrs).mean(axis=1)


def _coco_api(backend):
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as exc:
            raise ImportError(
                "backend='faster_coco_eval' needs `pip install faster-coco-eval`"
            ) from exc
        return COCO, COCOeval_faster
    raise ValueError(f"evaluate_coco: backend must be one of {BACKENDS}, got {backend!r}")


def classwise_table(coco_eval, cat_ids, class_names):
    """Per-class AP (IoU 0.5:0.95, all areas, last maxDets) as a terminaltables string.

    ``cat_ids`` and ``class_names`` are in label order; pycocotools' class axis is in the
    order of ``coco_eval.params.catIds`` (sorted ids), so each row looks its id up there.
    """
    precisions = coco_eval.eval["precision"]  # (iou, recall, class, area, maxdets)
    axis = {int(c): k for k, c in enumerate(coco_eval.params.catIds)}
    rows = [["category", "AP"]]
    for cat_id, name in zip(cat_ids, class_names):
        p = precisions[:, :, axis[int(cat_id)], 0, -1]
        p = p[p > -1]
        rows.append([name, f"{float(np.mean(p)):.3f}" if p.size else "nan"])
    return AsciiTable(rows).table


def evaluate_coco(
    ann_file,
    results,
    img_ids,
    cat_ids,
    metric="bbox",
    class_names=None,
    classwise=False,
    proposal_nums=(100, 300, 1000),
    iou_thrs=None,
    jsonfile_prefix=None,
    backend="pycocotools",
    gt_bboxes=None,
    logger=None,
    keypoint_sigmas=None,
):
    """COCO metrics of ``results`` against the ground truth in ``ann_file``.

    Args:
        ann_file: COCO json path (or a loaded ``COCO`` object of ``backend``).
        img_ids, cat_ids: the dataset's image ids (result order) and category ids (label
            order).
        metric: ``bbox``, ``segm``, ``keypoints`` (OKS), ``proposal`` (AR at
            ``proposal_nums``, class-agnostic) and ``proposal_fast`` (our recall on
            ``gt_bboxes``, no pycocotools).
        classwise: also log a per-class AP table.
        iou_thrs: IoU thresholds (default COCO's 0.5:0.95).
        jsonfile_prefix: keep the result json files at ``<prefix>.<metric>.json``.
        backend: ``"pycocotools"`` or ``"faster_coco_eval"`` (if installed).
        keypoint_sigmas: the K OKS sigmas of ``keypoints`` (``None``: pycocotools' COCO
            person sigmas, which fit 17 keypoints only).

    Returns:
        dict of floats: ``bbox_mAP``, ``bbox_mAP_50``, ``bbox_mAP_75``, ``bbox_mAP_s/m/l``,
        ``bbox_AR@1/10/100``, ``bbox_AR_s/m/l@100`` (same for ``segm``);
        ``keypoints_mAP``, ``keypoints_mAP_50/75/m/l``, ``keypoints_AR``,
        ``keypoints_AR_50/75/m/l``; ``AR@N`` and ``AR_s/m/l@N`` (largest N) for proposals.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise KeyError(f"evaluate_coco: metric(s) {unknown} not supported; use {METRICS}")
    results = as_predictions(results, None if cat_ids is None else len(cat_ids))
    out = {}
    if "proposal_fast" in metrics:
        if gt_bboxes is None:
            raise ValueError("evaluate_coco: metric 'proposal_fast' needs gt_bboxes")
        ar = fast_eval_recall(results, gt_bboxes, proposal_nums, iou_thrs)
        rows = [["proposals", "AR"], *[[str(n), f"{a:.4f}"] for n, a in zip(proposal_nums, ar)]]
        log_text(AsciiTable(rows).table, logger)
        for num, value in zip(proposal_nums, ar):
            out[f"AR@{num}"] = float(value)
    coco_metrics = [m for m in metrics if m != "proposal_fast"]
    if not coco_metrics:
        return out
    if len(results) != len(img_ids):
        raise ValueError(f"evaluate_coco: {len(results)} results for {len(img_ids)} images")
    available = _result_files(_result_kind(results))
    sources = []  # the result list each metric is computed on
    for m in coco_metrics:
        key = m if m in available else "bbox" if m == "proposal" and "bbox" in available else None
        if key is None:
            needs = {"segm": "mask", "keypoints": "keypoint"}.get(m, "box")
            raise KeyError(
                f"evaluate_coco: metric {m!r} needs {needs} results, got "
                f"{'/'.join(available)} results"
            )
        sources.append(key)
    COCO, COCOeval = _coco_api(backend)
    if isinstance(ann_file, str):
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(ann_file)
    else:
        coco_gt = ann_file
    # The detections go to pycocotools as the dicts we build, not through a json file, and
    # only one kind (bbox or segm) is held at a time.
    written = set()

    def detections(kind):
        dets = coco_detections(results, img_ids, cat_ids, kind)
        if jsonfile_prefix is not None and kind not in written:
            _dump_list(dets, f"{jsonfile_prefix}.{kind}.json")  # before loadRes adds keys
            written.add(kind)
        return dets

    by_metric = {}
    dets, dets_kind = None, None
    for m, key in zip(coco_metrics, sources):
        if key != dets_kind:
            dets = None  # free the previous list before building the next
            dets, dets_kind = detections(key), key
        if not dets:
            warnings.warn(f"evaluate_coco: no detections for {m!r}", stacklevel=2)
            continue
        by_metric[m] = _run_cocoeval(
            coco_gt, dets, m, COCO, COCOeval, img_ids, cat_ids, class_names, classwise,
            proposal_nums, iou_thrs, logger, backend, keypoint_sigmas,
        )  # fmt: skip
    dets = None
    if jsonfile_prefix is not None:
        for kind in available:  # keep every result file, as format_results does
            if kind not in written:
                detections(kind)
    for m in coco_metrics:
        out.update(by_metric.get(m, {}))
    return out


def _load_results(coco_gt, dets, iou_type, COCO, backend):
    """``coco_gt.loadRes(dets)``, with less memory for pycocotools.

    pycocotools' ``loadRes`` gives every detection that has a box its box area, an id and
    ``iscrowd=0`` (for ``segm`` results too, which keep their box), and to box-only
    detections a polygon of the box (8 numbers in two lists) that box evaluation never
    reads: about 260 bytes a detection. For ``bbox`` / ``proposal`` evaluation with
    pycocotools this does the same without the polygon; otherwise it calls ``loadRes``.
    """
    if backend != "pycocotools" or iou_type != "bbox":
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(dets)
    known = set(coco_gt.getImgIds())
    unknown = {d["image_id"] for d in dets} - known
    if unknown:
        raise ValueError(
            f"evaluate_coco: detections for image ids {sorted(unknown)[:10]} that are not in "
            "the ground truth"
        )
    res = COCO()
    res.dataset["info"] = copy.deepcopy(coco_gt.dataset.get("info", {}))
    res.dataset["images"] = list(coco_gt.dataset["images"])
    res.dataset["categories"] = copy.deepcopy(coco_gt.dataset["categories"])
    for ann_id, ann in enumerate(dets, 1):  # as loadRes: the box area, id, not a crowd
        bb = ann["bbox"]
        ann["area"] = bb[2] * bb[3]
        ann["id"] = ann_id
        ann["iscrowd"] = 0
    res.dataset["annotations"] = dets
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def _category_groups(coco_eval, max_dets):
    """Consecutive slices of ``params.catIds`` with about ``max_dets`` detections each (at
    least one category a slice)."""
    counts = {}
    for ann in coco_eval.cocoDt.dataset["annotations"]:
        counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
    groups, current, size = [], [], 0
    for cat_id in coco_eval.params.catIds:
        n = counts.get(int(cat_id), 0)
        if current and size + n > max_dets:
            groups.append(current)
            current, size = [], 0
        current.append(cat_id)
        size += n
    if current:
        groups.append(current)
    return groups


def _evaluate_by_category_groups(coco_eval, max_dets=100_000):
    """``coco_eval.evaluate()`` and ``accumulate()`` (pycocotools), a group of categories at
    a time, through pycocotools' public API only.

    ``evaluate()`` keeps a table per image, category and area range (the matches of every
    detection at every IoU threshold) until ``accumulate()`` has read them: about 1 KB a
    detection. Each category's precision and recall depend only on its own tables, so a
    ``COCOeval`` per group of categories of about ``max_dets`` detections (same ground truth,
    detections and params, ``params.catIds`` the group), evaluated and accumulated, gives
    that group's slices of ``precision`` / ``recall`` / ``scores``; put together they are the
    same ``eval`` as one ``evaluate()`` + ``accumulate()``, with the tables of one group in
    memory at a time. ``coco_eval.eval`` is set to them, so ``summarize()`` works as usual.
    """
    p = coco_eval.params
    if not p.useCats or p.iouType not in ("bbox", "segm"):
        coco_eval.evaluate()
        coco_eval.accumulate()
        return
    # the order evaluate() puts them in (the class axis of its arrays is sorted ids)
    p.imgIds = list(np.unique(p.imgIds))
    p.catIds = list(np.unique(p.catIds))
    p.maxDets = sorted(p.maxDets)
    all_cats = p.catIds
    T, R, A, M = len(p.iouThrs), len(p.recThrs), len(p.areaRng), len(p.maxDets)
    K = len(all_cats)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    scores = -np.ones((T, R, K, A, M))
    start = 0
    for group in _category_groups(coco_eval, max_dets):
        part = type(coco_eval)(coco_eval.cocoGt, coco_eval.cocoDt, p.iouType)
        part.params = copy.deepcopy(p)
        part.params.catIds = list(group)
        part.evaluate()
        part.accumulate()
        end = start + len(group)
        precision[:, :, start:end] = part.eval["precision"]
        recall[:, start:end] = part.eval["recall"]
        scores[:, :, start:end] = part.eval["scores"]
        start = end
        part = None  # its per-image tables go before the next group's are built
    coco_eval.eval = {
        "params": p,
        "counts": [T, R, K, A, M],
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "precision": precision,
        "recall": recall,
        "scores": scores,
    }


def average_recall(coco_eval, area="all"):
    """Average recall over the IoU thresholds at each of ``params.maxDets`` (an accumulated
    ``COCOeval``), as ``summarize()`` computes its AR lines, for any number of ``maxDets``
    (``summarize()`` reads the first three and fails with fewer).

    Returns:
        list of floats, one per ``params.maxDets``; -1 where there is no ground truth.
    """
    p = coco_eval.params
    recall = coco_eval.eval["recall"]  # (iou, class, area, maxdets)
    area_index = list(p.areaRngLbl).index(area)
    out = []
    for m in range(len(p.maxDets)):
        r = recall[:, :, area_index, m]
        r = r[r > -1]
        out.append(float(np.mean(r)) if r.size else -1.0)
    return out


def _run_cocoeval(coco_gt, dets, metric, COCO, COCOeval, img_ids, cat_ids, class_names,
                  classwise, proposal_nums, iou_thrs, logger, backend="pycocotools",
                  keypoint_sigmas=None):  # fmt: skip
    iou_type = "bbox" if metric == "proposal" else metric
    coco_dt = _load_results(coco_gt, dets, iou_type, COCO, backend)
    coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    if metric == "keypoints":
        num_keypoints = len(dets[0]["keypoints"]) // 3
        if keypoint_sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.asarray(keypoint_sigmas, dtype=np.float64)
        if len(coco_eval.params.kpt_oks_sigmas) != num_keypoints:
            raise ValueError(
                f"evaluate_coco: keypoint results have {num_keypoints} keypoints but the OKS "
                f"sigmas {len(coco_eval.params.kpt_oks_sigmas)}; declare the dataset's sigmas "
                "(keypoint_meta=dict(sigmas=[...]) in its config)"
            )
    coco_eval.params.catIds = [int(c) for c in cat_ids]
    coco_eval.params.imgIds = sorted(int(i) for i in img_ids)
    if iou_thrs is not None:
        coco_eval.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
    if metric == "proposal":
        coco_eval.params.useCats = 0
        coco_eval.params.maxDets = [int(n) for n in proposal_nums]
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            _evaluate_by_category_groups(coco_eval)
        else:
            coco_eval.evaluate()
            coco_eval.accumulate()
    out = {}
    if metric == "proposal":
        # summarize() prints AP lines at maxDets[2] and AR at the first three maxDets: it
        # fails with fewer than three proposal_nums and skips any beyond them
        nums = coco_eval.params.maxDets
        rows = [["proposals", "AR", "AR_s", "AR_m", "AR_l"]]
        by_area = {a: average_recall(coco_eval, a) for a in ("all", "small", "medium", "large")}
        for i, num in enumerate(nums):
            out[f"AR@{num}"] = by_area["all"][i]
            rows.append([str(num), *(f"{by_area[a][i]:.3f}" for a in by_area)])
        for size, area in zip("sml", ("small", "medium", "large")):
            out[f"AR_{size}@{nums[-1]}"] = by_area[area][-1]
        log_text(f"Evaluating proposal...\n{AsciiTable(rows).table}", logger)
        return out
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        coco_eval.summarize()
    log_text(f"Evaluating {metric}...\n{summary.getvalue().rstrip()}", logger)
    stats = coco_eval.stats
    names = KEYPOINT_SUMMARY_NAMES if metric == "keypoints" else SUMMARY_NAMES
    for name, value in zip(names, stats):
        out[f"{metric}_{name}"] = float(value)
    if classwise:
        names = class_names or [str(c) for c in cat_ids]
        log_text(classwise_table(coco_eval, cat_ids, names), logger)
    return out
