"""Draw a detector's detections on an image, or on every image of a folder.

    python demo/image_demo.py IMG_OR_DIR CONFIG CHECKPOINT [--out-dir demo_out]
        [--score-thr 0.3] [--device cpu]
        [--thickness PX] [--font-scale S] [--palette NAME | R,G,B ...]

Boxes, class names and scores, masks (half-transparent) and keypoints (joined by the
checkpoint's skeleton) of the detections scoring at least ``--score-thr`` are drawn on each
image and written under ``--out-dir`` with the image's file name (for a folder: its path
relative to the folder; the folder is walked with a progress bar).
"""

import argparse
import os.path as osp
import sys

from tqdm import tqdm

from mmdet_like.apis.demos import (
    DemoError,
    add_model_arguments,
    draw_detections,
    draw_style,
    find_images,
    load_model,
    read_image,
    write_image,
)
from mmdet_like.errors import run_tool


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw a detector's detections on images")
    parser.add_argument("img", help="an image file, or a folder walked for images")
    add_model_arguments(parser)
    parser.add_argument(
        "--out-dir", default="demo_out", help="folder of the drawn images (default demo_out)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    style = draw_style(args)
    images = find_images(args.img)
    outputs = [osp.join(args.out_dir, rel) for _, rel in images]
    for (path, _), out in zip(images, outputs):
        if osp.abspath(out) == osp.abspath(path):
            raise DemoError(f"--out-dir {args.out_dir} would overwrite the input {path}")
    model = load_model(args.config, args.checkpoint, args.device)
    pairs = list(zip(images, outputs))
    for (path, _), out in tqdm(pairs, unit="images", disable=len(pairs) == 1):
        write_image(out, draw_detections(model, read_image(path), args.score_thr, style))
    print(f"{len(pairs)} image(s) with their detections -> {args.out_dir}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
