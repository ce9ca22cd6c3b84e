"""Tiny datasets written to tmp_path: images made with numpy/cv2, a few annotations."""

import json

import cv2
import numpy as np
import pycocotools.mask as mask_utils


def write_image(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def rect_poly(x1, y1, x2, y2):
    return [float(v) for v in (x1, y1, x2, y1, x2, y2, x1, y2)]


def rect_rle(x1, y1, x2, y2, width, height, compressed=True):
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    if compressed:
        rle["counts"] = rle["counts"].decode("ascii")
        return rle
    # uncompressed: counts as run lengths (column-major)
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"size": [height, width], "counts": counts}


def coco_dict():
    """3 images (64x48 wide, 48x64 tall, 40x40 empty), categories 1 cat, 3 dog, 7 bird."""
    images = [
        dict(id=10, file_name="a.png", width=64, height=48),
        dict(id=20, file_name="b.png", width=48, height=64),
        dict(id=30, file_name="c.png", width=40, height=40),
    ]
    anns = [
        dict(id=1, image_id=10, category_id=1, bbox=[4, 6, 20, 10], area=200, iscrowd=0,
             segmentation=[rect_poly(4, 6, 24, 16)]),
        dict(id=2, image_id=10, category_id=3, bbox=[30, 20, 16, 20], area=320, iscrowd=0,
             segmentation=rect_rle(30, 20, 46, 40, 64, 48)),
        dict(id=3, image_id=10, category_id=3, bbox=[50, 2, 10, 10], area=100, iscrowd=1,
             segmentation=rect_rle(50, 2, 60, 12, 64, 48, compressed=False)),
        dict(id=4, image_id=20, category_id=7, bbox=[8, 8, 24, 30], area=720, iscrowd=0,
             segmentation=[rect_poly(8, 8, 32, 38)]),
        dict(id=5, image_id=20, category_id=1, bbox=[2, 40, 12, 12], area=144, iscrowd=0,
             segmentation=[rect_poly(2, 40, 14, 52)]),
    ]  # fmt: skip
    cats = [dict(id=1, name="cat"), dict(id=3, name="dog"), dict(id=7, name="bird")]
    return dict(images=images, annotations=anns, categories=cats)


def write_coco(root, data=None, name="ann.json"):
    data = coco_dict() if data is None else data
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(data["images"]):
        write_image(img_dir / img["file_name"], img.get("width", 8), img.get("height", 8), seed=i)
    ann_file = root / name
    ann_file.write_text(json.dumps(data))
    return ann_file, img_dir
