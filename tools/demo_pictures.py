"""Draw a trained detector's results on a few images into one picture (a grid).

    python tools/demo_pictures.py CONFIG CHECKPOINT IMAGE_DIR OUT.png [--num 8] [--cols 4]
        [--scale 3] [--score-thr 0.5] [--device cpu] [--thickness PX] [--font-scale S]
        [--palette NAME | R,G,B ...]

Takes the first ``--num`` images of ``IMAGE_DIR`` (sorted by name), runs
``inference_detector`` on each, enlarges each image ``--scale`` times (nearest neighbour, so
that labels drawn on small images stay readable), draws the boxes, masks, keypoints (joined
by the checkpoint's skeleton), class names and scores of detections scoring at least
``--score-thr`` (line width and font from the enlarged image's size unless given), and
tiles the pictures in a grid of ``--cols`` columns. ``make demo`` uses it for the picture in
the README.
"""

import argparse
import os
import os.path as osp
import sys

import cv2
import numpy as np

from mmdet_like.apis import inference_detector, init_detector
from mmdet_like.errors import run_tool
from mmdet_like.structures import result_parts
from mmdet_like.visualization import add_draw_arguments, draw_result, style_from_args

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def scale_result(result, scale):
    """Per-class boxes (and boolean masks, and keypoints) of ``result`` enlarged ``scale``
    times."""
    bbox_results, segm_results, keypoint_results = result_parts(result)
    boxes = []
    for per_class in bbox_results:
        scaled = np.array(per_class, dtype=np.float32).reshape(-1, 5)
        scaled[:, :4] *= scale
        boxes.append(scaled)
    masks = None
    if segm_results is not None:
        masks = [
            [np.kron(np.asarray(m, dtype=bool), np.ones((scale, scale), dtype=bool)) for m in per]
            for per in segm_results
        ]
    if keypoint_results is None:
        return boxes if masks is None else (boxes, masks)
    points = []
    for per_class in keypoint_results:
        scaled = np.array(per_class, dtype=np.float32)
        scaled[..., :2] *= scale
        points.append(scaled)
    return boxes, masks, points


def grid(pictures, cols, gap=4):
    """Tile equally sized (H, W, 3) pictures row by row, ``gap`` white pixels apart."""
    height, width = pictures[0].shape[:2]
    rows = -(-len(pictures) // cols)
    canvas = np.full(
        (rows * height + (rows - 1) * gap, cols * width + (cols - 1) * gap, 3), 255, np.uint8
    )
    for i, picture in enumerate(pictures):
        r, c = divmod(i, cols)
        y, x = r * (height + gap), c * (width + gap)
        canvas[y : y + height, x : x + width] = picture
    return canvas


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw detections of a few images in a grid")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("image_dir")
    parser.add_argument("out", help="output picture (e.g. .png)")
    parser.add_argument("--num", type=int, default=8, help="images drawn (default 8)")
    parser.add_argument("--cols", type=int, default=4, help="columns of the grid (default 4)")
    parser.add_argument("--scale", type=int, default=3, help="enlargement (default 3)")
    parser.add_argument("--score-thr", type=float, default=0.5, help="lowest score drawn")
    parser.add_argument("--device", default="cpu")
    add_draw_arguments(parser)
    args = parser.parse_args(argv)
    if args.num < 1 or args.cols < 1 or args.scale < 1:
        parser.error("--num, --cols and --scale must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    style = style_from_args(args)
    if not osp.isdir(args.image_dir):
        raise SystemExit(f"{args.image_dir}: no such folder of images")
    names = sorted(n for n in os.listdir(args.image_dir) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise SystemExit(f"{args.image_dir}: no image ({', '.join(IMAGE_SUFFIXES)}) in it")
    model = init_detector(args.config, args.checkpoint, device=args.device)
    pictures = []
    for name in names[: args.num]:
        img = cv2.imread(osp.join(args.image_dir, name))
        if img is None:
            raise SystemExit(f"{osp.join(args.image_dir, name)}: not a readable image")
        result = inference_detector(model, img)
        big = cv2.resize(img, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST)
        pictures.append(
            draw_result(
                big,
                scale_result(result, args.scale),
                model.CLASSES,
                score_thr=args.score_thr,
                skeleton=model.KEYPOINT_SKELETON,
                style=style,
            )
        )
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    if not cv2.imwrite(args.out, grid(pictures, min(args.cols, len(pictures)))):
        raise SystemExit(f"cannot write {args.out}")
    print(f"{len(pictures)} images with their detections -> {args.out}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
