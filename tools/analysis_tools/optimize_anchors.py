"""Fit anchor sizes and ratios to the training set's boxes and print them as config lines.

    python tools/analysis_tools/optimize_anchors.py CONFIG [--num-anchors N] [--iters 300]
        [--num-ratios R] [--cfg-options K=V ...]

Every training sample goes through the config's training pipeline (so the boxes are sized as
the model sees them: after Resize and the other transforms), then the anchors are fitted by
k-means with ``1 - IoU`` as the distance, boxes and anchors centred at the origin (only
their widths and heights count). The anchors keep the form the project's
``AnchorGenerator`` builds: every level has the same number of sizes, all levels share the
ratios, so ``N = levels * sizes per level * ratios`` (default: the config's own count) and
each iteration assigns every box to its best anchor, then sets each size (each ratio) to the
geometric mean of its boxes' ``sqrt(w * h)`` (``h / w``). Sizes are sorted and given to the
levels from the finest stride up. Prints the ``anchor_generator=dict(...)`` to paste into the
head's config and the mean best IoU of the boxes with the config's anchors and the fitted ones.
"""

import argparse
import math
import sys

import numpy as np
from tqdm import tqdm

from mmdet_like.apis.tool_utils import (
    ToolError,
    build_train_dataset,
    load_tool_config,
    training_boxes,
)
from mmdet_like.engine import add_cfg_options_argument
from mmdet_like.errors import run_tool

_SHAPE_KEYS = (
    "scales", "base_sizes", "octave_base_scale", "scales_per_octave", "sizes", "ratios",
)  # fmt: skip


def find_anchor_generator(model_cfg, config_path):
    """``(head key, anchor_generator cfg)`` of the first head that has one."""
    for key, value in model_cfg.items():
        if isinstance(value, dict) and isinstance(value.get("anchor_generator"), dict):
            return key, value["anchor_generator"]
    raise ToolError(f"{config_path}: no head of the model has an anchor_generator")


def anchor_shapes(generator_cfg):
    """(A, 2) widths and heights of every base anchor of every level of ``generator_cfg``."""
    from mmdet_like.registry import ANCHOR_GENERATORS, build_from_cfg

    generator = build_from_cfg(dict(generator_cfg), ANCHOR_GENERATORS)
    shapes = [a[:, 2:] - a[:, :2] for a in generator.base_anchors]
    return np.concatenate([s.numpy() for s in shapes]).astype(np.float64), generator


def wh_iou(boxes_wh, anchors_wh):
    """(n, A) IoU of boxes and anchors of sizes ``(w, h)``, all centred at the origin."""
    inter = np.minimum(boxes_wh[:, None, 0], anchors_wh[None, :, 0]) * np.minimum(
        boxes_wh[:, None, 1], anchors_wh[None, :, 1]
    )
    union = boxes_wh.prod(1)[:, None] + anchors_wh.prod(1)[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def mean_best_iou(boxes_wh, anchors_wh):
    return float(wh_iou(boxes_wh, anchors_wh).max(1).mean())


def grid_anchors(sizes, ratios):
    """(S * R, 2) anchors: every size at every ratio (h / w), size ** 2 the area."""
    s = np.repeat(sizes, len(ratios))
    r = np.tile(ratios, len(sizes))
    return np.stack([s / np.sqrt(r), s * np.sqrt(r)], axis=1)


def fit_anchors(boxes_wh, num_sizes, num_ratios, iters=300):
    """k-means (distance ``1 - IoU``) over anchors ``sizes x ratios``; returns sorted
    ``(sizes, ratios)``."""
    log_size = 0.5 * np.log(boxes_wh.prod(1))
    log_ratio = np.log(boxes_wh[:, 1] / boxes_wh[:, 0])
    quantiles = lambda n: (np.arange(n) + 0.5) / n  # noqa: E731
    sizes = np.exp(np.quantile(log_size, quantiles(num_sizes)))
    ratios = np.exp(np.quantile(log_ratio, quantiles(num_ratios)))
    for _ in range(iters):
        best = wh_iou(boxes_wh, grid_anchors(sizes, ratios)).argmax(1)
        size_of, ratio_of = best // num_ratios, best % num_ratios
        new_sizes, new_ratios = sizes.copy(), ratios.copy()
        for i in range(num_sizes):
            if (size_of == i).any():
                new_sizes[i] = math.exp(log_size[size_of == i].mean())
        for j in range(num_ratios):
            if (ratio_of == j).any():
                new_ratios[j] = math.exp(log_ratio[ratio_of == j].mean())
        new_sizes.sort()
        new_ratios.sort()
        if np.allclose(new_sizes, sizes) and np.allclose(new_ratios, ratios):
            break
        sizes, ratios = new_sizes, new_ratios
    return sizes, ratios


def collect_boxes(dataset):
    """(n, 2) widths and heights of every box of every training sample, as the pipeline
    gives them (degenerate boxes dropped)."""
    all_wh = []
    for index in tqdm(range(len(dataset)), desc="boxes", unit="img"):
        boxes = training_boxes(dataset[index])
        all_wh.append(boxes[:, 2:] - boxes[:, :2])
    wh = np.concatenate(all_wh) if all_wh else np.zeros((0, 2))
    return wh[(wh > 0).all(1)]


def config_lines(head, generator_cfg, sizes_per_level, ratios):
    keep = {k: v for k, v in generator_cfg.items() if k not in _SHAPE_KEYS}
    items = ["_delete_=True"] + [f"{k}={v!r}" for k, v in keep.items()]
    sizes_text = (
        "["
        + ", ".join("[" + ", ".join(f"{s:.1f}" for s in level) + "]" for level in sizes_per_level)
        + "]"
    )
    items += [f"sizes={sizes_text}", "ratios=[" + ", ".join(f"{r:.3f}" for r in ratios) + "]"]
    inner = ",\n        ".join(items)
    return f"model = dict(\n    {head}=dict(anchor_generator=dict(\n        {inner},\n    )),\n)"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="config file")
    parser.add_argument(
        "--num-anchors",
        type=int,
        default=None,
        help="anchor shapes in all: levels x sizes per level x ratios (default: the config's)",
    )
    parser.add_argument(
        "--num-ratios", type=int, default=None, help="ratios (default: the config's count)"
    )
    parser.add_argument("--iters", type=int, default=300, help="k-means iterations at most")
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.iters < 1:
        raise ToolError(f"--iters must be at least 1, got {args.iters}")
    cfg = load_tool_config(args.config, args.cfg_options)
    head, generator_cfg = find_anchor_generator(cfg.model, args.config)
    before_wh, generator = anchor_shapes(generator_cfg)
    levels = generator.num_levels
    num_ratios = args.num_ratios or len(generator.ratios)
    num_anchors = args.num_anchors or len(before_wh)
    if num_ratios < 1 or num_anchors < 1 or num_anchors % (levels * num_ratios):
        raise ToolError(
            f"--num-anchors {num_anchors} must be a multiple of levels x ratios = "
            f"{levels} x {num_ratios} (every level has the same sizes count, all share the ratios)"
        )
    boxes_wh = collect_boxes(build_train_dataset(cfg, args.config))
    if len(boxes_wh) < num_anchors:
        raise ToolError(
            f"{args.config}: the training set has {len(boxes_wh)} boxes, fewer than the "
            f"{num_anchors} anchors to fit"
        )
    per_level = num_anchors // (levels * num_ratios)
    sizes, ratios = fit_anchors(boxes_wh, levels * per_level, num_ratios, args.iters)
    sizes_per_level = [sizes[i * per_level : (i + 1) * per_level] for i in range(levels)]
    before = mean_best_iou(boxes_wh, before_wh)
    after = mean_best_iou(boxes_wh, grid_anchors(sizes, ratios))
    print(f"{len(boxes_wh)} boxes; anchors fitted: {len(sizes)} sizes x {num_ratios} ratios")
    print(f"mean best IoU before (config's anchors): {before:.4f}")
    print(f"mean best IoU after (fitted anchors): {after:.4f}")
    print("config lines (paste into the config):")
    print(config_lines(head, generator_cfg, sizes_per_level, ratios))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
