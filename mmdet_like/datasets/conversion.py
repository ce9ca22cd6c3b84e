"""What the converters of ``tools/dataset_converters/`` share: the COCO json they write,
the ``--split train=0.8,val=0.2`` random split and the output files.

A converter reads its format into :class:`ImageRecord` items holding :class:`Instance`
items and hands them to :func:`build_coco`. An instance has a box and, only where the
source has one, a polygon outline: box-only data gets no ``segmentation``, so a mask
model cannot silently learn box-shaped masks from it (the dataset refuses
``with_mask=True`` instead).
"""

import json
import math
import os
import os.path as osp
from collections import namedtuple

import numpy as np

from mmdet_like.datasets.errors import DatasetError

ImageRecord = namedtuple("ImageRecord", "file_name width height instances")
ImageRecord.__doc__ = """One image: ``file_name`` relative to the image folder, its size,
and a list of :class:`Instance`."""

Instance = namedtuple("Instance", "label box polygons iscrowd", defaults=(None, False))
Instance.__doc__ = """One object: ``label`` (0-based index into the class names), ``box``
``(x1, y1, x2, y2)`` in continuous pixels, ``polygons`` (a list of flat ``[x1, y1, x2, y2,
...]`` lists, or ``None`` for a box without an outline) and ``iscrowd`` (ignored in
training and evaluation)."""

DECIMALS = 3  # coordinates are written rounded to this many decimals


def polygon_area(flat):
    """Area of the polygon ``[x1, y1, x2, y2, ...]`` (shoelace formula)."""
    xy = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def polygon_box(polygons):
    """``(x1, y1, x2, y2)`` around all the points of ``polygons``."""
    xy = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
    x1, y1 = xy.min(axis=0)
    x2, y2 = xy.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)


def _rounded(values):
    return [round(float(v), DECIMALS) for v in values]


def build_coco(images, class_names):
    """:class:`ImageRecord` items and the class names -> a COCO dict.

    Image ids are 1, 2, ... in ``images`` order, annotation ids 1, 2, ... in instance
    order, category ids ``label + 1``. ``bbox`` is ``[x, y, w, h]``; ``area`` is the
    polygons' area where the instance has polygons (then ``segmentation`` holds them),
    else the box's.
    """
    coco_images, annotations = [], []
    for img_id, record in enumerate(images, start=1):
        coco_images.append(
            dict(id=img_id, file_name=record.file_name, width=record.width, height=record.height)
        )
        for inst in record.instances:
            x1, y1, x2, y2 = inst.box
            ann = dict(
                id=len(annotations) + 1,
                image_id=img_id,
                category_id=int(inst.label) + 1,
                bbox=_rounded((x1, y1, x2 - x1, y2 - y1)),
                iscrowd=int(bool(inst.iscrowd)),
            )
            if inst.polygons:
                ann["segmentation"] = [_rounded(p) for p in inst.polygons]
                ann["area"] = round(sum(polygon_area(p) for p in inst.polygons), DECIMALS)
            else:
                ann["area"] = round((x2 - x1) * (y2 - y1), DECIMALS)
            annotations.append(ann)
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(class_names)]
    return dict(images=coco_images, annotations=annotations, categories=categories)


def parse_split(items, option="--split"):
    """``["train=0.8,val=0.2"]`` (or ``["train=0.8", "val=0.2"]``) -> ``{"train": 0.8,
    "val": 0.2}``; ``None`` when no item has ``=`` (image-set names, not fractions).

    The fractions must be positive and add up to 1.
    """
    if not items or not any("=" in item for item in items):
        return None
    fractions = {}
    for part in ",".join(items).split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            fraction = float(value) if sep else math.nan
        except ValueError:
            fraction = math.nan
        if not name or not (0 < fraction <= 1) or name in fractions:
            raise DatasetError(
                f"{option} {','.join(items)}: {part.strip()!r} is not NAME=FRACTION with a new "
                "name and a fraction in (0, 1]. Fix: e.g. --split train=0.8,val=0.2."
            )
        fractions[name] = fraction
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise DatasetError(
            f"{option} {','.join(items)}: the fractions add up to {sum(fractions.values()):g}, "
            "not 1. Fix: e.g. --split train=0.8,val=0.2."
        )
    return fractions


def split_at_random(keys, fractions, seed, what="images"):
    """Deal ``keys`` into parts of the given fractions: ``{name: sorted keys}``.

    The keys are sorted, shuffled by a generator seeded with ``seed`` and cut at the rounded
    cumulative fractions, so the same keys, fractions and seed always give the same parts.
    A part left empty raises :class:`DatasetError`.
    """
    keys = sorted(keys)
    order = np.random.default_rng(seed).permutation(len(keys))
    ends = np.round(np.cumsum(list(fractions.values())) * len(keys)).astype(int)
    ends[-1] = len(keys)
    parts, start = {}, 0
    for (name, fraction), end in zip(fractions.items(), ends):
        if end <= start:
            raise DatasetError(
                f"--split: part {name!r} ({fraction:g} of {len(keys)} {what}) gets no image. "
                f"Fix: give it a larger fraction, or convert more {what}."
            )
        parts[name] = sorted(keys[i] for i in order[start:end])
        start = end
    return parts


def output_paths(out, names):
    """Where the parts ``names`` are written: ``OUT/<name>.json`` for each. ``out`` must be a
    folder (it is created)."""
    if out.endswith(".json"):
        raise DatasetError(
            f"{out}: with several parts (--split, or the splits of data.yaml) the output is a "
            "folder that gets one <part>.json each. Fix: give a folder, e.g. "
            f"{osp.splitext(out)[0]}/."
        )
    return {name: osp.join(out, f"{name}.json") for name in names}


def write_json(coco, path):
    """Write ``coco`` to ``path`` (its folder created), compactly."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(coco, f, separators=(",", ":"))


def summary(path, coco):
    """One line on a written file: images, instances (how many with polygons), classes."""
    anns = coco["annotations"]
    with_polygons = sum("segmentation" in a for a in anns)
    if not with_polygons:
        outline = "boxes only, no segmentation"
    elif with_polygons == len(anns):
        outline = "with polygons"
    else:
        outline = f"{with_polygons} with polygons, {len(anns) - with_polygons} boxes only"
    return (
        f"{path}: {len(coco['images'])} images, {len(anns)} instances ({outline}), classes "
        f"{[c['name'] for c in coco['categories']]}"
    )
