"""COCO error analysis (Hoiem et al.; the Detectron/pycocotools ``analyze``): how much of a
detector's lost precision each kind of error costs.

For each category and area range, seven precision-recall curves on COCOeval's 101 recall
thresholds, each one with one more kind of error forgiven than the one before:

- ``C75``: PR at IoU 0.75;
- ``C50``: PR at IoU 0.5;
- ``Loc``: PR at IoU 0.1 (localisation errors forgiven, duplicates still count);
- ``Sim``: ``Loc`` after also ignoring detections on ground truth of another category of
  the same supercategory (confusions with similar classes forgiven);
- ``Oth``: ``Loc`` after ignoring detections on ground truth of any other category (every
  class confusion forgiven);
- ``BG``: after also forgiving background false positives: precision 1 at every recall
  that ``Oth`` reaches;
- ``FN``: after also forgiving the missed ground truth: precision 1 everywhere.

``Sim`` and ``Oth`` come from a COCOeval of the category alone, at IoU 0.1, on a copy of
the ground truth in which the other categories' boxes (those of the same supercategory, or
all of them) carry the category's id with ``iscrowd=1``: a detection on one is then
matched to an ignored region (COCOeval's crowd rule: intersection over the detection's
area) and counts neither as a true nor a false positive. A curve's AP is the mean of its
precision over the recall thresholds; the overall curve is the mean over the categories
with ground truth in the area range (as COCOeval's AP), so the overall ``C75`` and ``C50``
are COCOeval's AP at those IoUs (``maxDets`` 100). A category without ground truth in an
area range has no curve there (``None`` in the summary, no picture).
"""

import contextlib
import io
import json
import math
import os
import os.path as osp
import re

import numpy as np

from mmdet_like.errors import ProjectError

CURVES = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
AREA_NAMES = ("all", "small", "medium", "large")
DEFAULT_AREAS = (32**2, 96**2, 1e5**2)  # small/medium, medium/large, largest (COCO's)
# fill colours of the bands under the curves (C75 lightest; Loc blue, Sim red, Oth green,
# BG purple, FN orange as in the Detectron plots)
COLORS = ("#f2f2f2", "#c8c8c8", "#4f82bd", "#bf4f4c", "#5ce661", "#8063a3", "#ff9900")


class ErrorAnalysisError(ProjectError, ValueError):
    """A results or annotation file that the error analysis cannot read."""


@contextlib.contextmanager
def _quiet():
    """pycocotools prints its progress; keep the tool's output (and tqdm's bar) clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _read_json(path, what):
    if osp.isdir(path):
        raise ErrorAnalysisError(f"{what} {path!r} is a folder, not a file")
    if not osp.isfile(path):
        raise ErrorAnalysisError(f"{what} {path!r} does not exist; check the path")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ErrorAnalysisError(f"{what} {path}: not a JSON file ({exc})") from exc


def _coco(dataset):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


def load_coco_gt(ann_file):
    """The COCO annotation file ``ann_file`` as a pycocotools ``COCO``, checked: the
    ``images``, ``annotations`` and ``categories`` lists, each annotation's image and
    category known. An annotation without ``area`` gets its box's."""
    data = _read_json(ann_file, "annotation file")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ErrorAnalysisError(
            f"{ann_file}: not a COCO annotation file (a JSON object with 'images', "
            "'annotations' and 'categories' lists)"
        )
    if not data["categories"]:
        raise ErrorAnalysisError(f"{ann_file}: no categories")
    img_ids = {img.get("id") for img in data["images"]}
    cat_ids = {cat.get("id") for cat in data["categories"]}
    annotations = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= set(ann):
            raise ErrorAnalysisError(
                f"{ann_file}: annotation {i} lacks image_id, category_id or bbox"
            )
        if ann["image_id"] not in img_ids or ann["category_id"] not in cat_ids:
            raise ErrorAnalysisError(
                f"{ann_file}: annotation {i} has image_id {ann['image_id']!r} / category_id "
                f"{ann['category_id']!r}, not among the file's images / categories"
            )
        ann = dict(ann)
        ann.setdefault("id", i + 1)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        annotations.append(ann)
    return _coco(dict(data, annotations=annotations))


def _number(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _segm_rle(segm, height, width):
    """A detection's ``segmentation`` (compressed or uncompressed RLE, or polygons) as a
    compressed RLE, or ``None`` if it is none of them."""
    from pycocotools import mask as mask_utils

    if isinstance(segm, list) and segm and all(isinstance(p, list) for p in segm):
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if isinstance(segm, dict) and {"counts", "size"} <= set(segm):
        if list(segm["size"]) != [height, width]:
            return None
        if isinstance(segm["counts"], list):
            return mask_utils.frPyObjects(segm, height, width)
        return segm
    return None


def load_detections(res_file, gt, iou_type="bbox"):
    """The detections of the COCO results file ``res_file`` (a list of ``image_id``,
    ``category_id``, ``score`` and ``bbox`` ``[x, y, w, h]`` or ``segmentation``, as
    ``tools/test.py --format-only`` writes), checked against ``gt``, as a pycocotools
    ``COCO``. With ``iou_type`` "segm" the masks are used (area and box from the mask)."""
    from pycocotools import mask as mask_utils

    dets = _read_json(res_file, "results file")
    if not isinstance(dets, list):
        hint = (
            " (it looks like an annotation file: give the detections' json as the first "
            "argument and the annotations with --ann)"
            if isinstance(dets, dict) and "annotations" in dets
            else ""
        )
        raise ErrorAnalysisError(
            f"{res_file}: holds a JSON {type(dets).__name__}, not a list of detections "
            f"(the PREFIX.bbox.json / .segm.json of tools/test.py --format-only){hint}"
        )
    images = gt.imgs
    unknown_imgs, unknown_cats, anns = set(), set(), []
    for i, det in enumerate(dets):
        need = (
            "image_id",
            "category_id",
            "score",
            "bbox" if iou_type == "bbox" else "segmentation",
        )
        if not isinstance(det, dict) or not all(k in det for k in need):
            raise ErrorAnalysisError(
                f"{res_file}: detection {i} is not a dict with {', '.join(need)}"
                + ("" if iou_type == "bbox" else " (give the .segm.json for --types segm)")
            )
        if not _number(det["score"]):
            raise ErrorAnalysisError(f"{res_file}: detection {i} has score {det['score']!r}")
        if det["image_id"] not in images:
            unknown_imgs.add(det["image_id"])
            continue
        if det["category_id"] not in gt.cats:
            unknown_cats.add(det["category_id"])
            continue
        ann = dict(det, id=len(anns) + 1, iscrowd=0)
        if iou_type == "bbox":
            box = det["bbox"]
            if not (isinstance(box, list) and len(box) == 4 and all(map(_number, box))) or (
                box[2] < 0 or box[3] < 0
            ):
                raise ErrorAnalysisError(
                    f"{res_file}: detection {i} has bbox {box!r}, not [x, y, w, h] with w, h >= 0"
                )
            ann.pop("segmentation", None)
            ann["area"] = float(box[2]) * float(box[3])
        else:
            img = images[det["image_id"]]
            rle = _segm_rle(det["segmentation"], img["height"], img["width"])
            if rle is None:
                raise ErrorAnalysisError(
                    f"{res_file}: detection {i}'s segmentation is not an RLE of its image's "
                    f"size ({img['height']}, {img['width']}) nor a list of polygons"
                )
            ann["segmentation"] = rle
            ann["area"] = float(mask_utils.area(rle))
            ann["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
        anns.append(ann)
    if unknown_imgs or unknown_cats:
        what = []
        if unknown_imgs:
            what.append(f"image ids {sorted(unknown_imgs, key=str)[:10]}")
        if unknown_cats:
            what.append(f"category ids {sorted(unknown_cats, key=str)[:10]}")
        raise ErrorAnalysisError(
            f"{res_file}: detections with {' and '.join(what)} that the annotation file does "
            "not have; give the annotation file the results were made on (--ann)"
        )
    return _coco(
        dict(images=gt.dataset["images"], categories=gt.dataset["categories"], annotations=anns)
    )


def area_ranges(areas=DEFAULT_AREAS):
    """COCOeval's ``areaRng`` for ``AREA_NAMES`` from the three bounds ``areas``."""
    small, medium, largest = areas
    if not 0 < small < medium < largest:
        raise ErrorAnalysisError(f"--areas {list(areas)}: give three increasing positive areas")
    return [[0, largest], [0, small], [small, medium], [medium, largest]]


def _precision(gt, dt, iou_type, iou_thrs, cat_ids, area_rng, max_dets):
    """COCOeval's precision, ``(T, R, K, A)`` (-1 where a category has no ground truth)."""
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(gt, dt, iou_type)
    ev.params.imgIds = sorted(gt.getImgIds())
    ev.params.catIds = list(cat_ids)
    ev.params.iouThrs = np.array(iou_thrs, dtype=np.float64)
    ev.params.maxDets = [max_dets]
    ev.params.areaRng = area_rng
    ev.params.areaRngLbl = list(AREA_NAMES)
    with _quiet():
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][..., 0], ev.params.recThrs


def _forgiving(gt, cat_id, others):
    """``gt`` with the annotations of the categories ``others`` given ``cat_id`` and turned
    into crowd regions (ignored when matched); only what a ``cat_id`` evaluation reads."""
    anns = []
    for ann in gt.dataset["annotations"]:
        if ann["category_id"] == cat_id:
            anns.append(dict(ann))
        elif ann["category_id"] in others:
            anns.append(dict(ann, category_id=cat_id, iscrowd=1, ignore=1))
    return _coco(dict(gt.dataset, annotations=anns))


def error_curves(gt, dt, iou_type="bbox", areas=DEFAULT_AREAS, max_dets=100, progress=True):
    """The seven curves of every category.

    Returns:
        dict: ``rec_thrs`` (R,), ``cat_ids`` (K, sorted), ``curves`` (7, R, K, A) in the
        order of ``CURVES`` and ``AREA_NAMES``, NaN where a category has no ground truth in
        an area range.
    """
    from tqdm import tqdm

    cat_ids = sorted(gt.getCatIds())
    area_rng = area_ranges(areas)
    base, rec_thrs = _precision(gt, dt, iou_type, [0.75, 0.5, 0.1], cat_ids, area_rng, max_dets)
    curves = np.zeros((len(CURVES), *base.shape[1:]), np.float64)
    curves[:3] = base
    supercategory = {c["id"]: c.get("supercategory", c.get("name")) for c in gt.loadCats(cat_ids)}
    for k, cat_id in enumerate(tqdm(cat_ids, desc=f"{iou_type} categories", disable=not progress)):
        same = {c for c in cat_ids if c != cat_id and supercategory[c] == supercategory[cat_id]}
        rest = set(cat_ids) - {cat_id}
        for row, others in ((3, same), (4, rest)):
            forgiving = _forgiving(gt, cat_id, others)
            ps, _ = _precision(forgiving, dt, iou_type, [0.1], [cat_id], area_rng, max_dets)
            curves[row, :, k] = ps[0, :, 0]
    no_gt = curves[0] < 0  # (R, K, A); COCOeval's -1: no ground truth
    curves[5] = curves[4] > 0
    curves[6] = 1.0
    curves[:, no_gt] = np.nan
    return dict(rec_thrs=np.asarray(rec_thrs), cat_ids=cat_ids, curves=curves)


def _ap(values):
    value = float(np.mean(values))
    return None if math.isnan(value) else value


def overall_curves(curves):
    """(7, R, A): the mean over the categories with ground truth (NaN where none has)."""
    with np.errstate(invalid="ignore"), _no_warnings():
        return np.nanmean(curves, axis=2)


@contextlib.contextmanager
def _no_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN slice
        yield


def summarize(gt, dt, analysis, areas=DEFAULT_AREAS):
    """A JSON-ready summary: each curve's AP per area range, overall and per category."""
    curves = analysis["curves"]
    overall = overall_curves(curves)
    num_dets = {c: len(dt.getAnnIds(catIds=[c])) for c in analysis["cat_ids"]}
    classes = []
    for k, cat in enumerate(gt.loadCats(analysis["cat_ids"])):
        num_gt = sum(1 for a in gt.loadAnns(gt.getAnnIds(catIds=[cat["id"]])) if not a["iscrowd"])
        classes.append(dict(
            id=cat["id"], name=cat["name"],
            supercategory=cat.get("supercategory", cat["name"]),
            num_gt=num_gt, num_dets=num_dets[cat["id"]],
            ap={area: {name: _ap(curves[i, :, k, a]) for i, name in enumerate(CURVES)}
                for a, area in enumerate(AREA_NAMES)},
        ))  # fmt: skip
    with_gt = {
        area: int((~np.isnan(curves[0, 0, :, a])).sum()) for a, area in enumerate(AREA_NAMES)
    }
    return dict(
        curves=list(CURVES),
        areas={name: rng for name, rng in zip(AREA_NAMES, area_ranges(areas))},
        num_images=len(gt.getImgIds()),
        categories_with_gt=with_gt,
        overall={
            area: {name: _ap(overall[i, :, a]) for i, name in enumerate(CURVES)}
            for a, area in enumerate(AREA_NAMES)
        },  # fmt: skip
        classes=classes,
    )


def _safe_name(name):
    return re.sub(r"[^\w.-]+", "_", str(name)).strip("_") or "class"


def plot_curves(rec_thrs, curves, aps, title, path):
    """Draw the seven curves ``curves`` (7, R) of one category (or overall) and area range
    as stacked bands into the PNG ``path`` (640 x 480), each labelled with its AP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    below = np.zeros_like(rec_thrs)
    for curve, ap, name, color in zip(curves, aps, CURVES, COLORS):
        ax.plot(rec_thrs, curve, color="black", linewidth=0.5)
        ax.fill_between(rec_thrs, below, curve, color=color, label=f"[{ap:.3f}] {name}")
        below = curve
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bars(aps_by_area, title, path):
    """Bars of the seven APs in each area range (``{area: [7 APs or None]}``) into ``path``;
    area ranges without ground truth (APs None) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    areas = [a for a, aps in aps_by_area.items() if aps[0] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    width = 0.8 / len(CURVES)
    x = np.arange(len(areas))
    for i, (name, color) in enumerate(zip(CURVES, COLORS)):
        heights = [aps_by_area[a][i] for a in areas]
        bars = ax.bar(x + (i - 3) * width, heights, width, color=color, edgecolor="black",
                      linewidth=0.5, label=name)  # fmt: skip
        ax.bar_label(bars, labels=[f"{h:.2f}" for h in heights], fontsize=5, rotation=90)
    ax.set_xticks(x, areas)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("AP")
    ax.set_title(title)
    ax.legend(loc="upper center", fontsize=7, ncol=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def analyze_errors(res_file, ann_file, out_dir, types=("bbox",), extraplots=False,
                   areas=DEFAULT_AREAS, max_dets=100, progress=True):  # fmt: skip
    """The whole analysis: for each IoU type, ``OUT_DIR/<type>/`` gets
    ``<type>-<class>-<area>.png`` for each category and area range with ground truth,
    ``<type>-allclass-<area>.png`` for the mean over categories, with ``extraplots``
    ``<type>-<class>-bars.png`` (categories with ground truth) and
    ``<type>-allclass-bars.png``, and ``summary.json`` (:func:`summarize`). Returns
    ``{type: summary}``."""
    for iou_type in types:
        if iou_type not in ("bbox", "segm"):
            raise ErrorAnalysisError(f"--types: {iou_type!r} is not bbox or segm")
    area_ranges(areas)
    gt = load_coco_gt(ann_file)
    if "segm" in types:
        sizeless = [i["id"] for i in gt.dataset["images"] if not {"height", "width"} <= set(i)]
        if sizeless:
            raise ErrorAnalysisError(
                f"{ann_file}: images {sizeless[:10]} have no height / width; --types segm "
                "needs them"
            )
        lacking = [a["id"] for a in gt.dataset["annotations"] if not a.get("segmentation")]
        if lacking:
            raise ErrorAnalysisError(
                f"{ann_file}: annotations {lacking[:10]} have no segmentation; --types segm "
                "needs masks in the ground truth"
            )
    summaries = {}
    for iou_type in types:
        dt = load_detections(res_file, gt, iou_type)
        analysis = error_curves(gt, dt, iou_type, areas, max_dets, progress)
        summary = summarize(gt, dt, analysis, areas)
        folder = osp.join(out_dir, iou_type)
        os.makedirs(folder, exist_ok=True)
        rec_thrs, curves = analysis["rec_thrs"], analysis["curves"]
        drawn = [("allclass", overall_curves(curves), summary["overall"])]
        drawn += [(c["name"], curves[:, :, k], c["ap"]) for k, c in enumerate(summary["classes"])]
        used = set()
        for name, per_area, aps in drawn:
            stem = _safe_name(name)
            while stem in used:  # two category names that clean to the same file name
                stem += "_"
            used.add(stem)
            for a, area in enumerate(AREA_NAMES):
                if aps[area]["FN"] is None:
                    continue  # no ground truth in this area range
                plot_curves(rec_thrs, per_area[:, :, a], [aps[area][c] for c in CURVES],
                            f"{iou_type} - {name} - {area}",
                            osp.join(folder, f"{iou_type}-{stem}-{area}.png"))  # fmt: skip
            if extraplots and aps["all"]["FN"] is not None:  # no bars without ground truth
                plot_bars({area: [aps[area][c] for c in CURVES] for area in AREA_NAMES},
                          f"{iou_type} - {name} - AP by area",
                          osp.join(folder, f"{iou_type}-{stem}-bars.png"))  # fmt: skip
        with open(osp.join(folder, "summary.json"), "w") as f:
            json.dump(dict(summary, iou_type=iou_type, results=res_file, annotations=ann_file),
                      f, indent=1)  # fmt: skip
        summaries[iou_type] = summary
    return summaries
