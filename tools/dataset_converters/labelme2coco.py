"""Convert LabelMe json files (one per image) to COCO json.

    python tools/dataset_converters/labelme2coco.py LABELME_DIR OUT_JSON [--classes a b]
    # split at random: OUT_DIR/train.json and OUT_DIR/val.json
    python tools/dataset_converters/labelme2coco.py LABELME_DIR OUT_DIR --split train=0.8,val=0.2

Every ``*.json`` under LABELME_DIR (recursively; COCO files there, such as an earlier
output, are left out) is one image: ``imagePath`` is resolved
relative to the json file (where that file is missing, the one image with the same name
stem is used and reported), ``imageWidth`` / ``imageHeight`` are its size (checked against
the image header). Each shape becomes an instance, or part of one:

- ``polygon``: the instance's ``segmentation`` polygon, its tight box the ``bbox``;
- ``circle`` (centre and a point on the circle): a polygon approximating the circle within
  half a pixel;
- ``rectangle``: the ``bbox`` only, no ``segmentation`` (a box is no outline), unless
  ``--rectangles-as-masks`` (for objects that are rectangles);
- shapes with the same ``group_id`` (not null) form one instance (several polygons, one
  class, the box around all);
- other shapes (line, point, ...) are refused, or skipped with ``--skip-other-shapes``.

Points outside the image are clipped to it. Classes: ``--classes`` (in that order; shapes of
other labels are skipped and counted), by default every label found, sorted. ``file_name``
is relative to LABELME_DIR: set ``img_prefix`` to it.
"""

import argparse
import math
import os
import os.path as osp
import sys
from collections import Counter

import numpy as np

from mmdet_like.datasets.conversion import (
    ImageRecord,
    Instance,
    build_coco,
    output_paths,
    parse_split,
    polygon_box,
    split_at_random,
    summary,
    write_json,
)
from mmdet_like.datasets.errors import DatasetError
from mmdet_like.datasets.image_files import ImageFolder, image_size
from mmdet_like.datasets.validate import read_json_file
from mmdet_like.errors import run_tool

OUTLINE_SHAPES = ("polygon", "circle")
MAX_CIRCLE_ERROR = 0.5  # px between a circle and its polygon


def circle_polygon(cx, cy, radius):
    """A regular polygon inscribed in the circle, flat ``[x1, y1, ...]``: a multiple of 4
    vertices (so its box is the circle's), enough that it is within
    ``MAX_CIRCLE_ERROR`` of the circle, between 8 and 360."""
    if radius <= MAX_CIRCLE_ERROR:
        count = 8
    else:
        count = math.pi / math.acos(1 - MAX_CIRCLE_ERROR / radius)
        count = int(min(max(4 * math.ceil(count / 4), 8), 360))
    angles = np.arange(count) * (2 * np.pi / count)
    xy = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    return [float(v) for v in xy.reshape(-1)]


def _points(shape, where):
    points = shape.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in p)
        for p in points
    ):  # fmt: skip
        raise DatasetError(
            f"{where}: 'points' must be a list of [x, y] number pairs, got {points!r}. Fix the "
            "shape (or delete it in LabelMe)."
        )
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def read_shape(shape, where, width, height, rectangles_as_masks):
    """One LabelMe shape -> ``(box, polygon or None)`` clipped to the image; ``None`` for a
    shape that is no region (line, point, ...)."""
    kind = shape.get("shape_type") or "polygon"
    points = _points(shape, where)
    if kind == "polygon":
        if len(points) < 3:
            raise DatasetError(
                f"{where}: a polygon needs 3 or more points, got {len(points)}. Fix the shape."
            )
        outline = points
    elif kind == "rectangle":
        if len(points) not in (2, 4):
            raise DatasetError(
                f"{where}: a rectangle has 2 corner points (or 4), got {len(points)}. Fix the "
                "shape."
            )
        (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
        outline = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    elif kind == "circle":
        if len(points) != 2:
            raise DatasetError(
                f"{where}: a circle has 2 points (centre, a point on it), got {len(points)}. Fix "
                "the shape."
            )
        radius = float(np.hypot(*(points[1] - points[0])))
        outline = np.asarray(circle_polygon(*points[0], radius)).reshape(-1, 2)
    else:
        return None
    outline = np.clip(outline, 0, [width, height])
    box = polygon_box([outline])
    if box[2] <= box[0] or box[3] <= box[1]:
        raise DatasetError(
            f"{where}: the {kind} has no area inside the {width}x{height} image (points "
            f"{points.tolist()}). Fix or delete the shape."
        )
    if kind == "rectangle" and not rectangles_as_masks:
        return box, None
    return box, [float(v) for v in outline.reshape(-1)]


def _size(doc, key, path):
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise DatasetError(
            f"{path}, field {key!r}: must be a positive whole number, got {value!r}. Fix the "
            "file (or remove the field to read the size from the image)."
        )
    return value


def is_coco(doc):
    """Whether ``doc`` is a COCO dict (e.g. this tool's output, written into the folder)."""
    return isinstance(doc, dict) and {"images", "annotations", "categories"} <= set(doc)


def read_labelme(path, root, rectangles_as_masks=False, skip_other_shapes=False, doc=None):
    """One LabelMe json (``doc``, read from ``path`` when not given) -> ``(file_name relative
    to root, width, height, objects, notes, skipped shape types)``; objects ``(label name,
    box, polygons or None)``, one per instance (shapes of one ``group_id`` merged)."""
    doc = read_json_file(path) if doc is None else doc
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise DatasetError(
            f"{path}: not a LabelMe file (no 'shapes' list). Fix: keep only LabelMe json files "
            "in the folder (move others out)."
        )
    folder, stem = osp.dirname(path), osp.splitext(osp.basename(path))[0]
    named = doc.get("imagePath")
    if named is not None and not isinstance(named, str):
        raise DatasetError(f"{path}, field 'imagePath': must be a string, got {named!r}.")
    found, stand_in = ImageFolder(folder).find(named, stem, path)
    if found is None:
        raise DatasetError(
            f"{path}, field 'imagePath': image {named or stem + '.*'!r} not found next to the "
            f"json (in {folder}), nor any image named {stem}.*. Fix: put the image there or "
            "correct imagePath (an embedded imageData is not extracted)."
        )
    notes = [f"{path}: imagePath {named!r} not found; using {found!r}"] if stand_in else []
    image = osp.normpath(osp.join(folder, found))
    actual = image_size(image)
    width, height = _size(doc, "imageWidth", path), _size(doc, "imageHeight", path)
    if width is not None and height is not None and (width, height) != actual:
        raise DatasetError(
            f"{path}, fields 'imageWidth'/'imageHeight': {width}x{height} but the image "
            f"{image} is {actual[0]}x{actual[1]}; the shapes would be misplaced. Fix: "
            "re-open and save the image in LabelMe."
        )
    width, height = actual
    groups, order, skipped = {}, [], Counter()
    for k, shape in enumerate(doc["shapes"]):
        where = f"{path}, shape {k}"
        if not isinstance(shape, dict):
            raise DatasetError(f"{where}: expected an object, got {shape!r}. Fix the file.")
        label, group_id = shape.get("label"), shape.get("group_id")
        if not isinstance(label, str) or not label.strip():
            raise DatasetError(f"{where}: no 'label' (its class). Fix: name it in LabelMe.")
        if group_id is not None and (not isinstance(group_id, int) or isinstance(group_id, bool)):
            raise DatasetError(
                f"{where}, field 'group_id': must be a whole number or null, got {group_id!r}."
            )
        region = read_shape(shape, where, width, height, rectangles_as_masks)
        if region is None:
            kind = shape.get("shape_type")
            if not skip_other_shapes:
                raise DatasetError(
                    f"{where}: shape_type {kind!r} is no region (polygon, rectangle and circle "
                    "are). Fix: delete it, or pass --skip-other-shapes."
                )
            skipped[kind] += 1
            continue
        key = ("group", group_id) if group_id is not None else ("shape", k)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((k, label.strip(), region))
    objects = [_merge(groups[key], key, path) for key in order]
    return osp.relpath(image, root), width, height, objects, notes, skipped


def _merge(members, key, path):
    """The shapes of one instance -> ``(label, box, polygons or None)``."""
    labels = {label for _, label, _ in members}
    shapes = [k for k, _, _ in members]
    if len(labels) > 1:
        raise DatasetError(
            f"{path}, shapes {shapes}: group_id {key[1]} joins different labels "
            f"{sorted(labels)}; one instance has one class. Fix the labels or the group_id."
        )
    polygons = [polygon for _, _, (_, polygon) in members if polygon is not None]
    if polygons and len(polygons) != len(members):
        raise DatasetError(
            f"{path}, shapes {shapes}: group_id {key[1]} joins rectangles (boxes, no outline) "
            "with polygons. Fix: draw the rectangles as polygons, or pass "
            "--rectangles-as-masks."
        )
    boxes = np.asarray([box for _, _, (box, _) in members])
    box = (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))
    return labels.pop(), tuple(float(v) for v in box), polygons or None


def find_labelme_files(root, exclude=()):
    """Sorted paths of the ``.json`` files under ``root``, except ``exclude``."""
    if not osp.isdir(root):
        raise DatasetError(f"{root}: folder not found. Fix: give the folder of LabelMe files.")
    exclude = {osp.abspath(p) for p in exclude}
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        paths += [osp.join(folder, f) for f in files if f.lower().endswith(".json")]
    paths = sorted(p for p in paths if osp.abspath(p) not in exclude)
    if not paths:
        raise DatasetError(
            f"{root}: no .json file in this folder (or below). Fix: give the folder LabelMe "
            "saved its json files to."
        )
    return paths


def to_records(items, classes):
    """``(records, class names, skipped label counts)``."""
    names = list(classes) if classes else sorted({o[0] for it in items for o in it[3]})
    label_of = {c: i for i, c in enumerate(names)}
    records, unknown = [], Counter()
    for file_name, width, height, objects, _, _ in items:
        instances = []
        for name, box, polygons in objects:
            if name in label_of:
                instances.append(Instance(label_of[name], box, polygons))
            else:
                unknown[name] += 1
        records.append(ImageRecord(file_name, width, height, instances))
    return records, names, unknown


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    parser.add_argument("labelme_dir", help="folder of LabelMe json files (searched recursively)")
    parser.add_argument("out", help="output json, or with --split NAME=FRACTION a folder")
    parser.add_argument("--classes", nargs="+", default=None, help="keep these, in this order")
    parser.add_argument("--split", nargs="+", default=None, help="NAME=FRACTION,... at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split")
    parser.add_argument(
        "--rectangles-as-masks", action="store_true",
        help="write rectangles as segmentation polygons too (objects that are rectangles)",
    )  # fmt: skip
    parser.add_argument(
        "--skip-other-shapes", action="store_true",
        help="skip lines, points and other shapes that are no region (default: refuse them)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    fractions = parse_split(args.split)
    if args.split and fractions is None:
        raise DatasetError(
            f"labelme2coco.py: --split {' '.join(args.split)} needs fractions. Fix: e.g. "
            "--split train=0.8,val=0.2."
        )
    outputs = {None: args.out} if fractions is None else output_paths(args.out, fractions)
    # a json written here by an earlier run is no LabelMe file
    files = find_labelme_files(args.labelme_dir, exclude=outputs.values())
    items, coco_files = [], []
    for path in files:
        doc = read_json_file(path)
        if is_coco(doc):
            coco_files.append(path)
            continue
        items.append(
            read_labelme(
                path, args.labelme_dir, args.rectangles_as_masks, args.skip_other_shapes, doc
            )
        )
    if not items:
        raise DatasetError(
            f"{args.labelme_dir}: no LabelMe file, only COCO files ({coco_files[:3]}). Fix: "
            "give the folder LabelMe saved its json files to."
        )
    records, names, unknown = to_records(items, args.classes)
    print(f"read {len(items)} LabelMe files of {args.labelme_dir}")
    if coco_files:
        print(f"note: left out {len(coco_files)} COCO json files (e.g. {coco_files[0]})")
    for item in items:
        for note in item[4]:
            print(f"note: {note} (same name stem)")
    skipped = sum((item[5] for item in items), Counter())
    if skipped:
        print(f"skipped shapes that are no region: {dict(sorted(skipped.items()))}")
    if unknown:
        print(f"skipped instances of labels not in --classes: {dict(sorted(unknown.items()))}")
    if fractions is None:
        parts = {args.out: records}
    else:  # one image a LabelMe file: the files are split
        split = split_at_random(range(len(records)), fractions, args.seed)
        parts = {outputs[name]: [records[i] for i in split[name]] for name in split}
    for path, part in parts.items():
        coco = build_coco(part, names)
        write_json(coco, path)
        print(summary(path, coco))
    print(f"img_prefix for the dataset config: {args.labelme_dir}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
