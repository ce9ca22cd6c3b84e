"""A confusion matrix of saved results against the config's test dataset.

    python tools/analysis_tools/confusion_matrix.py CONFIG results.pkl OUT_DIR
        [--score-thr 0.3] [--iou-thr 0.5] [--cfg-options KEY=VALUE ...]

Rows are the ground-truth classes and a last ``background`` row, columns the predicted
classes and a last ``background`` column. In each image the detections scoring at least
``--score-thr`` are taken from the highest score down; each is matched to the not yet
matched ground-truth box (of any class, ignored boxes left out) it overlaps most, if that
IoU is at least ``--iou-thr``, and counted at ``[gt class, predicted class]``. A detection
without a match counts at ``[background, predicted class]``, a ground-truth box without one
at ``[gt class, background]``.

Writes ``OUT_DIR/confusion_matrix.png`` (each row normalised to sum to 1, in percent) and
``OUT_DIR/confusion_matrix.json`` (``classes``, ``counts``, ``normalized``, ``score_thr``,
``iou_thr``).
"""

import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
from tqdm import tqdm

from mmdet_like.apis.analysis import box_iou, detections, load_results, load_test_dataset
from mmdet_like.engine import add_cfg_options_argument
from mmdet_like.errors import run_tool

CELL_INCHES = 0.5
ANNOTATED_CLASSES = 30  # past this many classes (background included), cells hold no numbers


def match_image(gt_boxes, gt_labels, det_boxes, det_scores, det_labels, iou_thr):
    """``(pairs, unmatched_gt, unmatched_det)`` of one image: ``pairs`` a list of
    ``(gt index, det index)``, greedy by descending score, each gt matched at most once."""
    order = np.argsort(-np.asarray(det_scores), kind="stable")
    ious = box_iou(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    pairs, unmatched_det = [], []
    for d in order:
        candidates = np.where(taken, -1.0, ious[d]) if len(gt_boxes) else np.zeros(0)
        g = int(np.argmax(candidates)) if len(candidates) else -1
        if g >= 0 and candidates[g] >= iou_thr:
            taken[g] = True
            pairs.append((g, int(d)))
        else:
            unmatched_det.append(int(d))
    return pairs, [int(g) for g in np.flatnonzero(~taken)], unmatched_det


def confusion_counts(results, annotations, num_classes, score_thr=0.3, iou_thr=0.5):
    """(num_classes + 1, num_classes + 1) int64 counts (see the module)."""
    counts = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    bg = num_classes
    for result, ann in tqdm(zip(results, annotations), total=len(results), desc="matching"):
        boxes, scores, labels = detections(result, num_classes, score_thr)
        gt_boxes, gt_labels = ann["bboxes"], np.asarray(ann["labels"], np.int64)
        pairs, lone_gt, lone_det = match_image(gt_boxes, gt_labels, boxes, scores, labels,
                                               iou_thr)  # fmt: skip
        for g, d in pairs:
            counts[gt_labels[g], labels[d]] += 1
        for g in lone_gt:
            counts[gt_labels[g], bg] += 1
        for d in lone_det:
            counts[bg, labels[d]] += 1
    return counts


def normalize_rows(counts):
    sums = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, sums, out=np.zeros(counts.shape, np.float64), where=sums > 0)


def plot_matrix(normalized, names, out, title):
    """Draw the row-normalised matrix (percent) into the PNG ``out``. The figure is sized to
    what it holds, so that nothing is clipped: a cell of ``CELL_INCHES`` a class (smaller,
    without the numbers, past ``ANNOTATED_CLASSES`` classes), the longest class name as
    measured (beside the matrix and, slanted, under it), and the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    annotated = n <= ANNOTATED_CLASSES
    cell = CELL_INCHES if annotated else CELL_INCHES / 2
    fontsize = 9 if annotated else 7
    fig = plt.figure(dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(normalized * 100, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), names, rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=fontsize)  # fmt: skip
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    heading = fig.suptitle(title)
    if annotated:
        for i in range(n):
            for j in range(n):
                value = normalized[i, j] * 100
                color = "white" if value > 50 else "black"
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", color=color, fontsize=8)
    # text extents do not depend on the figure's size: measure them, then size the figure
    renderer = fig.canvas.get_renderer()

    def largest(texts, side):
        """The largest width or height of ``texts``, in inches."""
        sizes = [getattr(t.get_window_extent(renderer), side) for t in texts]
        return max(sizes, default=0.0) / fig.dpi

    side = max(2.5, cell * n)  # the matrix
    beside = largest(ax.get_yticklabels(), "width")  # the names left of the matrix
    slant = largest(ax.get_xticklabels(), "width")  # how far the first slanted one reaches left
    under = largest(ax.get_xticklabels(), "height")  # the slanted names under the matrix
    axis_label, colorbar, margin = 0.35, 1.0, 0.3
    width = max(axis_label + max(beside, slant) + side + colorbar, largest([heading], "width"))
    height = largest([heading], "height") + side + under + axis_label
    # whole pixels: the picture is exactly the figure laid out
    fig.set_size_inches(
        np.ceil((width + 2 * margin) * fig.dpi) / fig.dpi,
        np.ceil((height + 2 * margin) * fig.dpi) / fig.dpi,
    )
    fig.savefig(out, dpi=fig.dpi)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Confusion matrix of saved detection results")
    parser.add_argument("config", help="config file (its data.test is the ground truth)")
    parser.add_argument("results", help="results pickle written by tools/test.py --out")
    parser.add_argument("out_dir", help="folder for confusion_matrix.png and .json")
    parser.add_argument("--score-thr", type=float, default=0.3, help="lowest score counted")
    parser.add_argument("--iou-thr", type=float, default=0.5, help="lowest IoU of a match")
    add_cfg_options_argument(parser, example="data.test.ann_file=...")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    _, dataset = load_test_dataset(args.config, args.cfg_options)
    results = load_results(args.results, len(dataset))
    names = [*dataset.CLASSES, "background"]
    annotations = [dataset.get_ann_info(i) for i in range(len(dataset))]
    counts = confusion_counts(results, annotations, len(dataset.CLASSES), args.score_thr,
                              args.iou_thr)  # fmt: skip
    normalized = normalize_rows(counts)
    os.makedirs(args.out_dir, exist_ok=True)
    png = osp.join(args.out_dir, "confusion_matrix.png")
    plot_matrix(normalized, names, png,
                f"confusion matrix (score >= {args.score_thr}, IoU >= {args.iou_thr})")  # fmt: skip
    with open(osp.join(args.out_dir, "confusion_matrix.json"), "w") as f:
        json.dump(dict(classes=names, counts=counts.tolist(), normalized=normalized.tolist(),
                       score_thr=args.score_thr, iou_thr=args.iou_thr), f, indent=1)  # fmt: skip
    print(f"confusion matrix of {len(results)} images written to {png} (counts in .json)")
    return None


if __name__ == "__main__":
    sys.exit(run_tool(main))
