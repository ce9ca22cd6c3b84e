"""COCO evaluation through pycocotools (or faster-coco-eval when installed).

Results per image, as mmdetection v1:

* ``bbox``: a list over classes of (n, 5) float32 arrays ``[x1, y1, x2, y2, score]``;
* ``bbox`` + ``segm``: a tuple ``(bbox_results, segm_results)``, ``segm_results`` a list over
  classes of lists of RLE dicts or (H, W) binary masks, one per box;
* proposals: one (n, 5) array.
"""

import contextlib
import io
import json
import os.path as osp
import tempfile
import warnings

import numpy as np
from terminaltables import AsciiTable

from mmdet_like.evaluation.mean_ap import log_text
from mmdet_like.evaluation.recall import eval_recalls

METRICS = ("bbox", "segm", "proposal", "proposal_fast")
BACKENDS = ("pycocotools", "faster_coco_eval")
SUMMARY_NAMES = (
    "mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l",
    "AR@1", "AR@10", "AR@100", "AR_s@100", "AR_m@100", "AR_l@100",
)  # fmt: skip


def xyxy2xywh(bbox):
    """``[x1, y1, x2, y2, ...]`` -> ``[x, y, w, h]`` python floats."""
    x1, y1, x2, y2 = (float(v) for v in bbox[:4])
    return [x1, y1, x2 - x1, y2 - y1]


def _rle(mask):
    if isinstance(mask, dict):
        rle = dict(mask)
    else:
        import pycocotools.mask as mask_utils

        rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    if isinstance(rle["counts"], bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _result_kind(results):
    first = results[0] if len(results) else None
    if isinstance(first, tuple):
        return "segm"
    if isinstance(first, np.ndarray):
        return "proposal"
    return "bbox"


def results2json(results, img_ids, cat_ids):
    """Results -> dict of COCO result lists: ``bbox`` (and ``segm``) or ``proposal``."""
    kind = _result_kind(results)
    if kind == "proposal":
        dets = []
        for img_id, props in zip(img_ids, results):
            for row in np.asarray(props).reshape(-1, 5):
                dets.append(
                    dict(image_id=int(img_id), bbox=xyxy2xywh(row), score=float(row[4]),
                         category_id=1)
                )  # fmt: skip
        return {"proposal": dets}
    bbox_json, segm_json = [], []
    for img_id, result in zip(img_ids, results):
        det, seg = result if kind == "segm" else (result, None)
        if len(det) != len(cat_ids):
            raise ValueError(
                f"results2json: image {img_id} has results for {len(det)} classes, the "
                f"dataset has {len(cat_ids)}"
            )
        for label, boxes in enumerate(det):
            boxes = np.asarray(boxes).reshape(-1, 5)
            for j, row in enumerate(boxes):
                item = dict(
                    image_id=int(img_id),
                    bbox=xyxy2xywh(row),
                    score=float(row[4]),
                    category_id=int(cat_ids[label]),
                )
                bbox_json.append(item)
                if seg is not None:
                    segm_json.append(dict(item, segmentation=_rle(seg[label][j])))
    out = {"bbox": bbox_json}
    if kind == "segm":
        out["segm"] = segm_json
    return out


def format_results(results, img_ids, cat_ids, jsonfile_prefix=None):
    """Write ``<prefix>.bbox.json`` (``.segm.json``, ``.proposal.json``).

    Returns:
        (files, tmp_dir): metric -> path, and the ``TemporaryDirectory`` used when no prefix
        was given (``None`` otherwise; call ``.cleanup()`` when done).
    """
    if len(results) != len(img_ids):
        raise ValueError(f"format_results: {len(results)} results for {len(img_ids)} images")
    tmp_dir = None
    if jsonfile_prefix is None:
        tmp_dir = tempfile.TemporaryDirectory()
        jsonfile_prefix = osp.join(tmp_dir.name, "results")
    files = {}
    for kind, items in results2json(results, img_ids, cat_ids).items():
        files[kind] = f"{jsonfile_prefix}.{kind}.json"
        with open(files[kind], "w", encoding="utf-8") as f:
            json.dump(items, f)
    return files, tmp_dir


def fast_eval_recall(results, gt_bboxes, proposal_nums=(100, 300, 1000), iou_thrs=None):
    """Average recall (mean over IoU 0.5:0.95 by default) of proposals or of all detections.

    Returns:
        (len(proposal_nums),) float64.
    """
    thrs = np.linspace(0.5, 0.95, 10) if iou_thrs is None else np.asarray(iou_thrs)
    proposals = []
    for result in results:
        if isinstance(result, tuple):
            result = result[0]
        if not isinstance(result, np.ndarray):
            result = np.concatenate([np.asarray(r).reshape(-1, 5) for r in result])
        proposals.append(result)
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
    """Per-class AP (IoU 0.5:0.95, all areas, last maxDets) as a terminaltables string."""
    precisions = coco_eval.eval["precision"]  # (iou, recall, class, area, maxdets)
    rows = [["category", "AP"]]
    for k, name in enumerate(class_names[: len(cat_ids)]):
        p = precisions[:, :, k, 0, -1]
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
):
    """COCO metrics of ``results`` against the ground truth in ``ann_file``.

    Args:
        ann_file: COCO json path (or a loaded ``COCO`` object of ``backend``).
        img_ids, cat_ids: the dataset's image ids (result order) and category ids (label
            order).
        metric: ``bbox``, ``segm``, ``proposal`` (AR at ``proposal_nums``, class-agnostic) and
            ``proposal_fast`` (our recall on ``gt_bboxes``, no pycocotools).
        classwise: also log a per-class AP table.
        iou_thrs: IoU thresholds (default COCO's 0.5:0.95).
        jsonfile_prefix: keep the result json files at ``<prefix>.<metric>.json``.
        backend: ``"pycocotools"`` or ``"faster_coco_eval"`` (if installed).

    Returns:
        dict of floats: ``bbox_mAP``, ``bbox_mAP_50``, ``bbox_mAP_75``, ``bbox_mAP_s/m/l``,
        ``bbox_AR@1/10/100``, ``bbox_AR_s/m/l@100`` (same for ``segm``); ``AR@N`` and
        ``AR_s/m/l@N`` (largest N) for proposals.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise KeyError(f"evaluate_coco: metric(s) {unknown} not supported; use {METRICS}")
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
    COCO, COCOeval = _coco_api(backend)
    files, tmp_dir = format_results(results, img_ids, cat_ids, jsonfile_prefix)
    try:
        if isinstance(ann_file, str):
            with contextlib.redirect_stdout(io.StringIO()):
                coco_gt = COCO(ann_file)
        else:
            coco_gt = ann_file
        for m in coco_metrics:
            key = m if m in files else "bbox" if m == "proposal" else None
            if key is None:
                raise KeyError(f"evaluate_coco: metric {m!r} needs mask results, got boxes only")
            with open(files[key], encoding="utf-8") as f:
                dets = json.load(f)
            if not dets:
                warnings.warn(f"evaluate_coco: no detections for {m!r}", stacklevel=2)
                continue
            out.update(
                _run_cocoeval(coco_gt, dets, m, COCO, COCOeval, img_ids, cat_ids, class_names,
                              classwise, proposal_nums, iou_thrs, logger)
            )  # fmt: skip
    finally:
        if tmp_dir is not None:
            tmp_dir.cleanup()
    return out


def _run_cocoeval(coco_gt, dets, metric, COCO, COCOeval, img_ids, cat_ids, class_names,
                  classwise, proposal_nums, iou_thrs, logger):  # fmt: skip
    iou_type = "bbox" if metric == "proposal" else metric
    if iou_type == "bbox":
        dets = [{k: v for k, v in d.items() if k != "segmentation"} for d in dets]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets)
    coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    coco_eval.params.catIds = [int(c) for c in cat_ids]
    coco_eval.params.imgIds = sorted(int(i) for i in img_ids)
    if iou_thrs is not None:
        coco_eval.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
    if metric == "proposal":
        coco_eval.params.useCats = 0
        coco_eval.params.maxDets = [int(n) for n in proposal_nums]
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    log_text(f"Evaluating {metric}...\n{summary.getvalue().rstrip()}", logger)
    stats = coco_eval.stats
    out = {}
    if metric == "proposal":
        nums = [int(n) for n in proposal_nums]
        for i, num in enumerate(nums[:3]):
            out[f"AR@{num}"] = float(stats[6 + i])
        for i, size in enumerate("sml"):
            out[f"AR_{size}@{nums[-1]}"] = float(stats[9 + i])
        return out
    for name, value in zip(SUMMARY_NAMES, stats):
        out[f"{metric}_{name}"] = float(value)
    if classwise:
        names = class_names or [str(c) for c in cat_ids]
        log_text(classwise_table(coco_eval, cat_ids, names), logger)
    return out
