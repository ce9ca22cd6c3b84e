"""The best and worst images of saved results by per-image bbox AP, drawn.

    python tools/analysis_tools/analyze_results.py CONFIG results.pkl SHOW_DIR [--topk 20]
        [--show-score-thr 0.3] [--scale 2] [--thickness PX] [--font-scale S]
        [--palette NAME | R,G,B ...] [--cfg-options KEY=VALUE ...]

Each image's bbox AP (IoU 0.5:0.95) is COCO's, computed by pycocotools on that image alone
(images without ground truth have none and are not ranked). The ``--topk`` images of highest
and of lowest AP are drawn, ground truth on the left and the detections scoring at least
``--show-score-thr`` on the right, enlarged ``--scale`` times, into ``SHOW_DIR/good/`` and
``SHOW_DIR/bad/`` (``RANK_NAME_apAP.png``, rank 0 the best / the worst). Every image's AP
is written to ``SHOW_DIR/per_image_ap.json``. Needs a COCO-format test dataset.
"""

import argparse
import contextlib
import io
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np
from tqdm import tqdm

from mmdet_like.apis.analysis import AnalysisError, detections, load_results, load_test_dataset
from mmdet_like.engine import add_cfg_options_argument
from mmdet_like.errors import run_tool
from mmdet_like.evaluation.coco_metric import coco_detections
from mmdet_like.visualization import (
    DrawStyle,
    add_draw_arguments,
    draw_ground_truth,
    draw_result,
    style_from_args,
)


def per_image_ap(ann_file, results, img_ids, cat_ids):
    """Image id -> bbox AP (IoU 0.5:0.95, pycocotools on that image alone); -1 for an image
    without ground truth."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(ann_file)
    dets = coco_detections(results, img_ids, cat_ids, "bbox")
    coco_dt = None
    if dets:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(dets)
    out = {}
    for img_id in tqdm(img_ids, desc="per-image AP"):
        img_id = int(img_id)
        if not coco_gt.getAnnIds(imgIds=[img_id], iscrowd=False):
            out[img_id] = -1.0
            continue
        if coco_dt is None:
            out[img_id] = 0.0
            continue
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.params.imgIds = [img_id]
        coco_eval.params.catIds = [int(c) for c in cat_ids]
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        out[img_id] = max(float(coco_eval.stats[0]), 0.0)  # -1: no detection in any class
    return out


def side_by_side(img, ann, result, class_names, ap, score_thr=0.3, scale=2, gap=6, style=None):
    """Ground truth (left) and detections (right) of one BGR image, enlarged ``scale``
    times, under a title strip; both drawn in ``style`` (a
    :class:`~mmdet_like.visualization.DrawStyle`)."""
    style = style or DrawStyle()
    big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    ann = dict(ann, bboxes=np.asarray(ann["bboxes"], np.float32).reshape(-1, 4) * scale)
    boxes, scores, labels = detections(result, len(class_names), score_thr)
    per_class = [
        np.concatenate([boxes[labels == k] * scale, scores[labels == k, None]], axis=1)
        for k in range(len(class_names))
    ]
    left = draw_ground_truth(big, ann["bboxes"], ann["labels"], class_names, style=style)
    right = draw_result(big, per_class, class_names, score_thr, style=style)
    h, w = big.shape[:2]
    canvas = np.full((h + 20, 2 * w + gap, 3), 255, np.uint8)
    canvas[20:, :w] = left
    canvas[20:, w + gap :] = right
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, "ground truth", (2, 14), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"predictions, AP {ap:.3f}", (w + gap + 2, 14), font, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)  # fmt: skip
    return canvas


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw the best and worst images by AP")
    parser.add_argument("config", help="config file (its data.test is the ground truth)")
    parser.add_argument("results", help="results pickle written by tools/test.py --out")
    parser.add_argument("show_dir", help="folder for good/, bad/ and per_image_ap.json")
    parser.add_argument("--topk", type=int, default=20, help="images drawn of each end")
    parser.add_argument("--show-score-thr", type=float, default=0.3, help="lowest score drawn")
    parser.add_argument("--scale", type=int, default=2, help="enlargement of the pictures")
    add_draw_arguments(parser)
    add_cfg_options_argument(parser, example="data.test.ann_file=...")
    args = parser.parse_args(argv)
    if args.topk < 1 or args.scale < 1:
        parser.error("--topk and --scale must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    style = style_from_args(args)
    _, dataset = load_test_dataset(args.config, args.cfg_options)
    gt = dataset.ground_truth() if hasattr(dataset, "ground_truth") else None
    if gt is None or gt.coco is None or not isinstance(gt.coco, str):
        raise AnalysisError(
            f"{args.config}: data.test is not a COCO-format dataset (per-image AP uses "
            "pycocotools); convert the annotations with tools/dataset_converters/"
        )
    results = load_results(args.results, len(dataset))
    aps = per_image_ap(gt.coco, results, gt.img_ids, gt.cat_ids)
    ranked = [i for i in range(len(dataset)) if aps[gt.img_ids[i]] >= 0]
    k = min(args.topk, len(ranked))
    best = sorted(ranked, key=lambda i: -aps[gt.img_ids[i]])[:k]  # ties: dataset order
    worst = sorted(ranked, key=lambda i: aps[gt.img_ids[i]])[:k]
    os.makedirs(args.show_dir, exist_ok=True)
    names = {}
    for folder, picked in (("good", best), ("bad", worst)):
        os.makedirs(osp.join(args.show_dir, folder), exist_ok=True)
        for rank, i in enumerate(tqdm(picked, desc=f"drawing {folder}")):
            info = dataset.get_img_info(i)
            path = osp.join(dataset.img_prefix, info["filename"])
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None:
                raise AnalysisError(f"{path}: cannot read this image (missing or not an image)")
            ap = aps[gt.img_ids[i]]
            picture = side_by_side(img, dataset.get_ann_info(i), results[i], dataset.CLASSES,
                                   ap, args.show_score_thr, args.scale, style=style)  # fmt: skip
            stem = osp.splitext(osp.basename(info["filename"]))[0]
            cv2.imwrite(osp.join(args.show_dir, folder, f"{rank:02d}_{stem}_ap{ap:.3f}.png"),
                        picture)  # fmt: skip
        names[folder] = [dataset.get_img_info(i)["filename"] for i in picked]
    with open(osp.join(args.show_dir, "per_image_ap.json"), "w") as f:
        json.dump({dataset.get_img_info(i)["filename"]: aps[gt.img_ids[i]]
                   for i in range(len(dataset))}, f, indent=1)  # fmt: skip
    print(f"{len(ranked)} images ranked by bbox AP; the best {k} and worst {k} drawn in "
          f"{args.show_dir}")  # fmt: skip
    for folder in ("good", "bad"):
        print(f"{folder}: " + ", ".join(names[folder]))
    return None


if __name__ == "__main__":
    sys.exit(run_tool(main))
