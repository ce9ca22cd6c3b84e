"""Convert a VIA (VGG Image Annotator) polygon json to COCO.

    python tools/dataset_converters/via2coco.py VIA_JSON IMG_DIR OUT_JSON \
        [--class-attr name] [--default-class object]

Each region's class is ``region_attributes[--class-attr]`` (or ``--default-class`` when
absent). Polygon and rect regions are supported; image sizes are read from the images.
"""

import argparse
import json
import os.path as osp
import sys

import cv2
import numpy as np

from mmdet_like.errors import run_tool


def _polygon(shape):
    kind = shape.get("name")
    if kind == "polygon" or kind == "polyline":
        xs, ys = shape["all_points_x"], shape["all_points_y"]
    elif kind == "rect":
        x, y, w, h = shape["x"], shape["y"], shape["width"], shape["height"]
        xs, ys = [x, x + w, x + w, x], [y, y, y + h, y + h]
    else:
        raise ValueError(f"unsupported VIA region shape {kind!r} (polygon and rect are)")
    return [float(v) for xy in zip(xs, ys) for v in xy]


def polygon_area(poly):
    x, y = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def via_to_coco(via, img_dir, class_attr="name", default_class=None, classes=None):
    """VIA project dict -> COCO dict (categories numbered from 1, in ``classes`` order or
    sorted by name)."""
    entries = list(via.get("_via_img_metadata", via).values())
    records = []
    for entry in entries:
        regions = entry.get("regions", [])
        regions = list(regions.values()) if isinstance(regions, dict) else regions
        img = cv2.imread(osp.join(img_dir, entry["filename"]), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise FileNotFoundError(f"{entry['filename']}: image not found in {img_dir}")
        objs = []
        for region in regions:
            name = (region.get("region_attributes") or {}).get(class_attr) or default_class
            if not name:
                raise ValueError(
                    f"{entry['filename']}: a region has no {class_attr!r} attribute; pass "
                    "--default-class"
                )
            objs.append((str(name), _polygon(region["shape_attributes"])))
        records.append((entry["filename"], img.shape[1], img.shape[0], objs))
    names = list(classes) if classes else sorted({n for r in records for n, _ in r[3]})
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    images, anns = [], []
    for img_id, (filename, w, h, objs) in enumerate(records, start=1):
        images.append(dict(id=img_id, file_name=filename, width=w, height=h))
        for name, poly in objs:
            if name not in cat_id:
                continue
            xs = np.clip(poly[0::2], 0, w)
            ys = np.clip(poly[1::2], 0, h)
            poly = [float(v) for xy in zip(xs, ys) for v in xy]
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max(), ys.max()
            if x2 <= x1 or y2 <= y1:
                continue
            anns.append(dict(
                id=len(anns) + 1, image_id=img_id, category_id=cat_id[name],
                bbox=[float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                area=polygon_area(poly), iscrowd=0, segmentation=[poly],
            ))  # fmt: skip
    categories = [dict(id=cat_id[n], name=n) for n in names]
    return dict(images=images, annotations=anns, categories=categories)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("via_json")
    parser.add_argument("img_dir")
    parser.add_argument("out_json")
    parser.add_argument("--class-attr", default="name")
    parser.add_argument("--default-class", default=None)
    parser.add_argument("--classes", nargs="+", default=None, help="keep these, in this order")
    args = parser.parse_args(argv)
    with open(args.via_json, encoding="utf-8") as f:
        via = json.load(f)
    coco = via_to_coco(via, args.img_dir, args.class_attr, args.default_class, args.classes)
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(coco, f)
    print(f"{args.out_json}: {len(coco['images'])} images, {len(coco['annotations'])} "
          f"instances, classes {[c['name'] for c in coco['categories']]}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_tool(main))
