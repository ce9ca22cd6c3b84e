"""Convert instance-mask PNGs to COCO json.

    python tools/dataset_converters/masks2coco.py IMG_DIR MASK_DIR OUT_JSON \
        --classes cat dog [--divisor 1000]

For image ``IMG_DIR/<stem>.<ext>`` the mask is ``MASK_DIR/<stem>.png`` (8- or 16-bit). A
pixel value ``v > 0`` marks instance ``v`` of class ``classes[v // divisor - 1]``
(Cityscapes style; with one class, values 1..divisor-1 are its instances when
``--divisor`` is larger than any value and ``--classes`` has one name). 0 is background.
Masks are written as RLE, boxes are the tight boxes of the masks.
"""

import argparse
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np
import pycocotools.mask as mask_utils

from mmdet_like.errors import run_tool

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def masks_to_coco(img_dir, mask_dir, classes, divisor=1000):
    images, anns = [], []
    files = sorted(f for f in os.listdir(img_dir) if f.lower().endswith(IMAGE_EXTS))
    for img_id, filename in enumerate(files, start=1):
        stem = osp.splitext(filename)[0]
        mask_path = osp.join(mask_dir, f"{stem}.png")
        label_map = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
        if label_map is None:
            raise FileNotFoundError(f"{mask_path}: no mask for image {filename}")
        if label_map.ndim == 3:
            raise ValueError(f"{mask_path}: expected a single-channel instance-id PNG")
        h, w = label_map.shape
        images.append(dict(id=img_id, file_name=filename, width=w, height=h))
        for value in np.unique(label_map):
            if value == 0:
                continue
            cls = 0 if len(classes) == 1 and value < divisor else int(value) // divisor - 1
            if not 0 <= cls < len(classes):
                raise ValueError(
                    f"{mask_path}: value {value} gives class index {cls}, outside {classes}"
                )
            mask = (label_map == value).astype(np.uint8)
            rle = mask_utils.encode(np.asfortranarray(mask))
            x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append(dict(
                id=len(anns) + 1, image_id=img_id, category_id=cls + 1, bbox=[x, y, bw, bh],
                area=float(mask.sum()), iscrowd=0, segmentation=rle,
            ))  # fmt: skip
    categories = [dict(id=i + 1, name=c) for i, c in enumerate(classes)]
    return dict(images=images, annotations=anns, categories=categories)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("img_dir")
    parser.add_argument("mask_dir")
    parser.add_argument("out_json")
    parser.add_argument("--classes", nargs="+", required=True)
    parser.add_argument("--divisor", type=int, default=1000)
    args = parser.parse_args(argv)
    coco = masks_to_coco(args.img_dir, args.mask_dir, args.classes, args.divisor)
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(coco, f)
    print(f"{args.out_json}: {len(coco['images'])} images, {len(coco['annotations'])} instances")


if __name__ == "__main__":
    sys.exit(run_tool(main))
