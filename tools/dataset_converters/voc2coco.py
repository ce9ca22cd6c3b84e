"""Convert a Pascal VOC folder (one or more image-set lists) to COCO json.

    python tools/dataset_converters/voc2coco.py VOC_ROOT OUT_JSON --split train \
        [--classes RBC WBC Platelets]

Boxes (1-based inclusive) become continuous ``[xmin - 1, ymin - 1, w, h]`` clipped to the
image; ``difficult`` objects become ``iscrowd=1`` (ignored in training and evaluation).
"""

import argparse
import json
import os.path as osp
import sys

from mmdet_like.datasets.voc import parse_voc_xml
from mmdet_like.errors import run_tool


def voc_to_coco(voc_root, splits=("train",), classes=None):
    """VOC folder -> COCO dict. Categories numbered from 1 in ``classes`` order (default:
    every object name found, sorted). Returns ``(coco, skipped)`` with the boxes dropped."""
    names = []
    for split in splits:
        with open(osp.join(voc_root, "ImageSets", "Main", f"{split}.txt"), encoding="utf-8") as f:
            names += [line.split()[0] for line in f if line.strip()]
    records = [parse_voc_xml(osp.join(voc_root, "Annotations", f"{n}.xml")) for n in names]
    classes = list(classes) if classes else sorted({o[0] for r in records for o in r[3]})
    cat_id = {c: i + 1 for i, c in enumerate(classes)}
    images, anns, skipped = [], [], []
    for img_id, (name, (_, w, h, objs)) in enumerate(zip(names, records), start=1):
        images.append(dict(id=img_id, file_name=f"{name}.jpg", width=w, height=h))
        for cls, (xmin, ymin, xmax, ymax), difficult in objs:
            if cls not in cat_id:
                continue
            x1, y1 = max(xmin - 1, 0.0), max(ymin - 1, 0.0)
            x2, y2 = min(xmax, float(w)), min(ymax, float(h))
            if x2 <= x1 or y2 <= y1:
                skipped.append((name, cls, (xmin, ymin, xmax, ymax)))
                continue
            bw, bh = x2 - x1, y2 - y1
            anns.append(dict(
                id=len(anns) + 1, image_id=img_id, category_id=cat_id[cls],
                bbox=[x1, y1, bw, bh], area=bw * bh, iscrowd=int(difficult),
                segmentation=[[x1, y1, x2, y1, x2, y2, x1, y2]],
            ))  # fmt: skip
    categories = [dict(id=cat_id[c], name=c) for c in classes]
    return dict(images=images, annotations=anns, categories=categories), skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("voc_root")
    parser.add_argument("out_json")
    parser.add_argument("--split", nargs="+", default=["train"])
    parser.add_argument("--classes", nargs="+", default=None)
    args = parser.parse_args(argv)
    coco, skipped = voc_to_coco(args.voc_root, args.split, args.classes)
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(coco, f)
    for name, cls, box in skipped:
        print(f"skipped {name}: {cls} box {box} has no area inside the image")
    print(f"{args.out_json}: {len(coco['images'])} images, {len(coco['annotations'])} "
          f"instances, classes {[c['name'] for c in coco['categories']]}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_tool(main))
