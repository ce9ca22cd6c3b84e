"""A small valid COCO file (3 images, boxes, polygon / RLE masks) for the bad-input tests."""

import copy
import json

import numpy as np
import pycocotools.mask as mask_utils


def rect_poly(x1, y1, x2, y2):
    return [float(v) for v in (x1, y1, x2, y1, x2, y2, x1, y2)]


def rect_rle(x1, y1, x2, y2, width, height, compressed=True):
    """A rectangle as COCO RLE: compressed (``counts`` str) or uncompressed (run list)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask))
        return {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    flat = mask.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": [height, width], "counts": counts}


COCO = {
    "images": [
        {"id": 10, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 20, "file_name": "b.png", "width": 48, "height": 64},
        {"id": 30, "file_name": "c.png", "width": 40, "height": 40},
    ],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 1, "bbox": [4, 6, 20, 10], "area": 200,
         "iscrowd": 0, "segmentation": [rect_poly(4, 6, 24, 16)]},
        {"id": 2, "image_id": 10, "category_id": 3, "bbox": [30, 20, 16, 20], "area": 320,
         "iscrowd": 0, "segmentation": rect_rle(30, 20, 46, 40, 64, 48)},
        {"id": 3, "image_id": 10, "category_id": 3, "bbox": [50, 2, 10, 10], "area": 100,
         "iscrowd": 1, "segmentation": rect_rle(50, 2, 60, 12, 64, 48, compressed=False)},
        {"id": 4, "image_id": 20, "category_id": 7, "bbox": [8, 8, 24, 30], "area": 720,
         "iscrowd": 0, "segmentation": [rect_poly(8, 8, 32, 38)]},
        {"id": 5, "image_id": 20, "category_id": 1, "bbox": [2, 40, 12, 12], "area": 144,
         "iscrowd": 0, "segmentation": [rect_poly(2, 40, 14, 52)]},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "bird"}],
}  # fmt: skip


def coco_dict():
    return copy.deepcopy(COCO)


def write_json(path, data):
    """Write ``data`` as JSON (NaN / Infinity allowed, as Python's json writes them)."""
    path.write_text(json.dumps(data))
    return path


def write_images(img_dir, data, seed=0):
    """One random PNG per image record, of the record's size."""
    import cv2

    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for img in data["images"]:
        pixels = rng.integers(0, 255, (img["height"], img["width"], 3), dtype=np.uint8)
        cv2.imwrite(str(img_dir / img["file_name"]), pixels)
