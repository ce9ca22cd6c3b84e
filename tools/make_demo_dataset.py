"""Draw a small, deterministic COCO-format instance-segmentation dataset of shapes.

    python tools/make_demo_dataset.py OUT [--num-train 1000] [--num-val 200] [--seed 0]
        [--keypoints] [--format coco|labelme] [--large-objects]

Writes ``OUT/train/*.png``, ``OUT/val/*.png`` and ``OUT/annotations/instances_{train,val}.json``
(with ``--keypoints``, ``OUT/annotations/keypoints_{train,val}.json`` too: the same images and
instances with keypoints, see :data:`KEYPOINT_NAMES`).
Every 128x128 image shows 1-5 shapes of 4 classes (circle, rectangle, triangle, star) with
random size, colour and rotation on a textured background (noise, gradients, stripes,
checkers). Shapes drawn later occlude earlier ones: each annotation is the *visible* part of
its shape (an RLE mask, its tight box and pixel area); shapes left mostly hidden are not
annotated. Image ``i`` of a split depends only on ``(seed, split, i)``, so the same seed gives
identical files, and more images extend a split without changing the first ones.

``--large-objects`` draws a set of few large objects instead (closer to photographs of
people or animals than the default's many small shapes): images of 256-320 px on the longer
side, landscape or portrait (the shorter side 60-85% of the longer), 1-3 shapes each, every
annotated instance's box (of its visible part) 30-90% of the image's shorter side on its
longer side (see :func:`draw_large_image`). The default output does not change with it.

``--format labelme`` writes the same kind of images as a LabelMe folder instead, as a person
annotating their own photos would have it: ``OUT/NNNNNN.png`` and ``OUT/NNNNNN.json`` for
``num_train + num_val`` images (no split: tools/dataset_converters/labelme2coco.py splits),
each instance one ``polygon`` shape per connected visible part (parts of one instance share
a ``group_id``).

Keypoints: one set of five named points shared by the shapes, each point named by where it
lies in the image, so that a horizontal flip maps every name to its mirror name:
``top`` (the highest vertex of a triangle or star), ``top_left`` / ``top_right`` (the upper
two corners of a rectangle, the upper two other tips of a star), ``bottom_left`` /
``bottom_right`` (the lower two corners of a rectangle, the base of a triangle, the lower
two tips of a star); circles have none (all unlabelled). A point is at the centre of its
vertex pixel; visibility 2 where the shape shows at that pixel, 1 where a later shape
covers it, 0 (unlabelled) outside the image or outside the instance's annotated box (the
box of its visible part: a vertex of a shape cut off by another shape can lie beyond it,
where a keypoint head, which predicts inside the box, cannot place it). The flip pairs
follow from the names (``left`` / ``right``).
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

CLASSES = ("circle", "rectangle", "triangle", "star")
IMG_SIZE = 128
MIN_VISIBLE_FRACTION = 0.4  # shapes with less of their area visible are dropped
MIN_VISIBLE_PIXELS = 30
# --large-objects: image sides, shapes per image, instance box size (its longer side over the
# image's shorter side)
LARGE_LONG_SIDE = (256, 320)
LARGE_SHORT_RATIO = (0.6, 0.85)
LARGE_NUM_SHAPES = (1, 3)
LARGE_OBJECT_FRACTION = (0.3, 0.9)
_SPLIT_IDS = {"train": 0, "val": 1}
KEYPOINT_NAMES = ("top", "top_left", "top_right", "bottom_left", "bottom_right")
# 1-based (COCO's convention) pairs of KEYPOINT_NAMES joined when drawn
KEYPOINT_SKELETON = ((1, 2), (1, 3), (2, 3), (2, 4), (3, 5), (4, 5))


def _background(rng, size, shape=None):
    """A (size, size, 3) uint8 textured background; with ``shape`` ``(h, w)`` (both at most
    ``size``), its top-left ``(h, w, 3)`` part."""
    kind = rng.integers(4)
    base = rng.uniform(40, 215, size=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # linear gradient between two colours
        other = rng.uniform(40, 215, size=3)
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = base * (1 - t) + other * t
    elif kind == 1:  # stripes
        period = rng.uniform(6, 24)
        angle = rng.uniform(0, np.pi)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) * size / period
        amp = rng.uniform(15, 45)
        img = base + amp * np.sin(2 * np.pi * phase)[..., None]
    elif kind == 2:  # checkers
        cell = int(rng.integers(8, 24))
        board = ((np.arange(size)[:, None] // cell + np.arange(size)[None] // cell) % 2)[..., None]
        img = base + rng.uniform(15, 40) * (board * 2.0 - 1.0)
    else:  # smooth blotches: upsampled low-resolution noise
        low = rng.uniform(-50, 50, size=(6, 6, 3)).astype(np.float32)
        img = base + cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    img = img + rng.normal(0, rng.uniform(3, 14), size=(size, size, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img if shape is None else np.ascontiguousarray(img[: shape[0], : shape[1]])


def _polygon(rng, cls, cx, cy, radius):
    """(k, 2) int32 vertices of a shape of class ``cls`` (circle: None)."""
    angle = rng.uniform(0, 2 * np.pi)
    if cls == "circle":
        return None
    if cls == "rectangle":
        aspect = rng.uniform(0.45, 1.0)
        w, h = 2 * radius * 0.85, 2 * radius * 0.85 * aspect
        pts = cv2.boxPoints(((cx, cy), (w, h), np.degrees(angle)))
    elif cls == "triangle":
        angles = angle + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(-0.25, 0.25, size=3)
        pts = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
    else:  # star
        inner = rng.uniform(0.38, 0.55)
        k = np.arange(10)
        radii = np.where(k % 2 == 0, radius, radius * inner)
        angles = angle + k * np.pi / 5
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
    return np.round(pts).astype(np.int32)


def _named_vertices(cls, polygon):
    """``{keypoint name: (x, y)}`` of a shape's vertices (pixel centres), named by their
    place in the image (see the module doc)."""
    if cls == "circle":
        return {}
    pts = polygon.astype(np.float64) + 0.5
    if cls == "star":
        pts = pts[0::2]  # the five tips
    by_height = pts[np.argsort(pts[:, 1], kind="stable")]
    names = {}
    rest = by_height
    if cls in ("triangle", "star"):
        names["top"], rest = by_height[0], by_height[1:]
    upper, lower = (rest[:2], rest[2:]) if len(rest) == 4 else (rest[:0], rest)
    for row, prefix in ((upper, "top"), (lower, "bottom")):
        if len(row):
            left, right = row[np.argsort(row[:, 0], kind="stable")]
            names[f"{prefix}_left"], names[f"{prefix}_right"] = left, right
    return {name: (float(x), float(y)) for name, (x, y) in names.items()}


def _shape_mask(cls, polygon, cx, cy, radius, size):
    """Boolean mask of a shape in an image of ``size`` (an int: square, or ``(h, w)``)."""
    mask = np.zeros(size if isinstance(size, tuple) else (size, size), np.uint8)
    if cls == "circle":
        cv2.circle(mask, (round(cx), round(cy)), round(radius), 1, thickness=-1)
    else:
        cv2.fillPoly(mask, [polygon], 1)
    return mask.astype(bool)


def _shape_color(rng, background_mean):
    """A saturated colour that differs from the background's mean colour."""
    for _ in range(20):
        hsv = np.array(
            [[[rng.integers(0, 180), rng.integers(110, 256), rng.integers(90, 256)]]], np.uint8
        )
        color = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        if np.abs(color - background_mean).sum() > 120:
            break
    return color


def _paint_shape(rng, img, background_mean, shapes, label, polygon, mask):
    """Paint the shape of ``mask`` on float ``img`` (H, W, 3) in a shaded colour apart from
    the background, take what it covers out of the earlier shapes' visible masks and append
    it to ``shapes`` as ``(label, full mask, visible mask, named vertices)``."""
    color = _shape_color(rng, background_mean)
    shade = rng.normal(0, rng.uniform(2, 10), size=(*img.shape[:2], 1))
    img[mask] = np.clip(color + shade[mask], 0, 255)
    for _, _, visible, _ in shapes:
        visible &= ~mask
    shapes.append((label, mask, mask.copy(), _named_vertices(CLASSES[label], polygon)))


def draw_image(rng, size=IMG_SIZE):
    """One image and its visible instances: ``(img, [(label, visible mask, keypoints),
    ...])``, keypoints a (K, 3) float array ``x, y, visibility`` (:data:`KEYPOINT_NAMES`)."""
    img = _background(rng, size).astype(np.float32)
    background_mean = img.reshape(-1, 3).mean(0)
    shapes = []  # (label, full mask, visible mask, named vertices)
    for _ in range(int(rng.integers(1, 6))):
        label = int(rng.integers(len(CLASSES)))
        cls = CLASSES[label]
        radius = rng.uniform(9, 30)
        cx = rng.uniform(radius * 0.5, size - radius * 0.5)
        cy = rng.uniform(radius * 0.5, size - radius * 0.5)
        polygon = _polygon(rng, cls, cx, cy, radius)
        mask = _shape_mask(cls, polygon, cx, cy, radius, size)
        if mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        _paint_shape(rng, img, background_mean, shapes, label, polygon, mask)
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0.6)
    instances = []
    for label, full, visible, vertices in shapes:
        area = int(visible.sum())
        if area < MIN_VISIBLE_PIXELS or area < MIN_VISIBLE_FRACTION * full.sum():
            continue
        instances.append((label, visible, _keypoints(vertices, full, visible)))
    return img, instances


def _box_long_side(mask):
    """The longer side (px) of a mask's tight box; 0 for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0
    return int(max(xs.max() - xs.min(), ys.max() - ys.min())) + 1


def draw_large_image(rng):
    """One ``--large-objects`` image and its visible instances, as :func:`draw_image`.

    The image is ``LARGE_LONG_SIDE`` px on its longer side, landscape or portrait. Each of
    its 1-3 shapes is centred at least its radius from the border and its box is
    ``LARGE_OBJECT_FRACTION`` of the shorter side on its longer side (redrawn until it is),
    so every annotated box is within those bounds too; a shape later covered so that
    less than ``MIN_VISIBLE_FRACTION`` of it or a box under that fraction stays visible is
    not annotated. The last shape is never covered, so every image has an instance.
    """
    long_side = int(rng.integers(LARGE_LONG_SIDE[0], LARGE_LONG_SIDE[1] + 1))
    short_side = int(round(long_side * rng.uniform(*LARGE_SHORT_RATIO)))
    height, width = (short_side, long_side) if rng.integers(2) else (long_side, short_side)
    low, high = (round(f * short_side) for f in LARGE_OBJECT_FRACTION)
    img = _background(rng, long_side, (height, width)).astype(np.float32)
    background_mean = img.reshape(-1, 3).mean(0)
    shapes = []  # (label, full mask, visible mask, named vertices)
    for _ in range(int(rng.integers(LARGE_NUM_SHAPES[0], LARGE_NUM_SHAPES[1] + 1))):
        label = int(rng.integers(len(CLASSES)))
        cls = CLASSES[label]
        while True:  # most draws fit; the loop ends with probability 1
            radius = rng.uniform(low / 2, high / 2)
            cx = rng.uniform(radius, width - radius)
            cy = rng.uniform(radius, height - radius)
            polygon = _polygon(rng, cls, cx, cy, radius)
            mask = _shape_mask(cls, polygon, cx, cy, radius, (height, width))
            if low <= _box_long_side(mask) <= high:
                break
        _paint_shape(rng, img, background_mean, shapes, label, polygon, mask)
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0.6)
    instances = []
    for label, full, visible, vertices in shapes:
        if visible.sum() < MIN_VISIBLE_FRACTION * full.sum() or _box_long_side(visible) < low:
            continue
        instances.append((label, visible, _keypoints(vertices, full, visible)))
    return img, instances


def _keypoints(vertices, full, visible):
    """(K, 3) ``x, y, visibility`` of a shape's named vertices."""
    height, width = visible.shape
    points = np.zeros((len(KEYPOINT_NAMES), 3))
    ys, xs = np.nonzero(visible)
    box = (xs.min() - 1, ys.min() - 1, xs.max() + 2, ys.max() + 2)  # the annotated box + 1 px
    for k, name in enumerate(KEYPOINT_NAMES):
        if name not in vertices:
            continue
        x, y = vertices[name]
        col, row = int(np.floor(x)), int(np.floor(y))
        if not (0 <= col < width and 0 <= row < height):
            continue  # outside the image: unlabelled
        if not (box[0] <= x <= box[2] and box[1] <= y <= box[3]):
            continue  # cut off from the visible part's box: no box-based model can place it
        # the vertex pixel itself may fall just outside the rasterised shape: look around it
        window = (slice(max(row - 1, 0), row + 2), slice(max(col - 1, 0), col + 2))
        shown = visible[window].any() or not full[window].any()
        points[k] = (x, y, 2 if shown else 1)
    return points


def _annotation(ann_id, img_id, label, mask, keypoints=None):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ys, xs = np.nonzero(mask)
    x1, y1 = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) + 1 - x1, int(ys.max()) + 1 - y1
    return {
        "id": ann_id,
        "image_id": img_id,
        "category_id": label + 1,
        "bbox": [x1, y1, w, h],
        "area": int(mask.sum()),
        "iscrowd": 0,
        "segmentation": {"size": [int(mask.shape[0]), int(mask.shape[1])],
                         "counts": rle["counts"].decode("ascii")},
        **({} if keypoints is None else {
            "keypoints": [round(float(v), 2) for v in keypoints.reshape(-1)],
            "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        }),
    }  # fmt: skip


def make_split(out, split, num_images, seed, large_objects=False):
    """Draw ``num_images`` images (:func:`draw_large_image`'s with ``large_objects``) into
    ``out/split``; returns the COCO dicts without and with keypoints."""
    os.makedirs(osp.join(out, split), exist_ok=True)
    images, annotations, with_keypoints = [], [], []
    for i in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], i])
        img, instances = draw_large_image(rng) if large_objects else draw_image(rng)
        file_name = f"{i:06d}.png"
        if not cv2.imwrite(osp.join(out, split, file_name), img):
            raise OSError(f"cannot write {osp.join(out, split, file_name)}")
        img_id = i + 1
        height, width = img.shape[:2]
        images.append({"id": img_id, "file_name": file_name, "width": width, "height": height})
        for label, mask, keypoints in instances:
            ann_id = len(annotations) + 1
            annotations.append(_annotation(ann_id, img_id, label, mask))
            with_keypoints.append(_annotation(ann_id, img_id, label, mask, keypoints))
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in
                  enumerate(CLASSES)]  # fmt: skip
    keypoint_categories = [
        dict(c, keypoints=list(KEYPOINT_NAMES), skeleton=[list(p) for p in KEYPOINT_SKELETON])
        for c in categories
    ]
    return (
        {"images": images, "annotations": annotations, "categories": categories},
        {"images": images, "annotations": with_keypoints, "categories": keypoint_categories},
    )


def _labelme_shapes(instances):
    """LabelMe shapes of ``(label, visible mask, keypoints)`` instances: the outline of each
    connected part as a polygon (pixel centres), the parts of one instance in one group."""
    shapes = []
    for group, (label, mask, _) in enumerate(instances):
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        parts = [c.reshape(-1, 2) for c in contours if len(c) >= 3]
        for part in parts:
            shapes.append({
                "label": CLASSES[label], "points": part.astype(float).tolist(),
                "group_id": group if len(parts) > 1 else None, "shape_type": "polygon",
                "flags": {},
            })  # fmt: skip
    return shapes


def make_labelme_folder(out, num_images, seed=0, large_objects=False):
    """``num_images`` images (:func:`draw_large_image`'s with ``large_objects``) with their
    LabelMe json files in ``out``; returns the number of polygon shapes written."""
    os.makedirs(out, exist_ok=True)
    count = 0
    for i in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_IDS["train"], i])
        img, instances = draw_large_image(rng) if large_objects else draw_image(rng)
        name = f"{i:06d}"
        if not cv2.imwrite(osp.join(out, f"{name}.png"), img):
            raise OSError(f"cannot write {osp.join(out, name)}.png")
        shapes = _labelme_shapes(instances)
        count += len(shapes)
        labelme = {
            "version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{name}.png",
            "imageData": None, "imageHeight": img.shape[0], "imageWidth": img.shape[1],
        }  # fmt: skip
        with open(osp.join(out, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(labelme, f, indent=1)
    return count


def as_single_class(coco, name="shape"):
    """``coco`` with its categories merged into one, ``name`` (id 1): every annotation
    becomes that class (the images and masks are unchanged)."""
    category = {"id": 1, "name": name, "supercategory": "shape"}
    for key in ("keypoints", "skeleton"):
        if key in coco["categories"][0]:
            category[key] = coco["categories"][0][key]
    annotations = [dict(a, category_id=1) for a in coco["annotations"]]
    return dict(coco, annotations=annotations, categories=[category])


def make_dataset(out, num_train=1000, num_val=200, seed=0, keypoints=False, large_objects=False,
                 single_class=False):  # fmt: skip
    """Write the dataset (the ``--large-objects`` one with ``large_objects``; every shape
    one class ``shape`` with ``single_class``) under ``out``; returns ``{split: annotation
    file}`` (with ``keypoints``, also ``{"<split>_keypoints": keypoint annotation file}``)."""
    os.makedirs(osp.join(out, "annotations"), exist_ok=True)
    files = {}
    for split, num in (("train", num_train), ("val", num_val)):
        coco, coco_keypoints = make_split(out, split, num, seed, large_objects)
        if single_class:
            coco, coco_keypoints = as_single_class(coco), as_single_class(coco_keypoints)
        written = {split: ("instances", coco)}
        if keypoints:
            written[f"{split}_keypoints"] = ("keypoints", coco_keypoints)
        for key, (prefix, data) in written.items():
            files[key] = osp.join(out, "annotations", f"{prefix}_{split}.json")
            with open(files[key], "w", encoding="utf-8") as f:
                json.dump(data, f)
    return files


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw the demo shapes dataset (COCO format)")
    parser.add_argument("out", help="output directory, e.g. data/demo")
    parser.add_argument("--num-train", type=int, default=1000, help="training images")
    parser.add_argument("--num-val", type=int, default=200, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--keypoints", action="store_true",
        help="also write annotations/keypoints_{train,val}.json (the shapes' named vertices)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=["coco", "labelme"], default="coco",
        help="coco (default) or a LabelMe folder of num-train + num-val images",
    )  # fmt: skip
    parser.add_argument(
        "--large-objects", action="store_true",
        help="1-3 large shapes (30-90%% of the shorter side) on 256-320 px images, landscape "
        "or portrait, instead of the default 128 px images of small shapes",
    )  # fmt: skip
    parser.add_argument(
        "--single-class", action="store_true",
        help="every shape annotated as one class, 'shape' (COCO format only): the same "
        "images, a one-class set (as a pedestrian set is)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.num_train < 0 or args.num_val < 0:
        raise SystemExit("--num-train and --num-val must be >= 0")
    if args.format == "labelme" and args.single_class:
        raise SystemExit("--single-class is for the COCO format (LabelMe keeps the shape names)")
    if args.format == "labelme":
        total = args.num_train + args.num_val
        shapes = make_labelme_folder(args.out, total, args.seed, args.large_objects)
        print(f"{total} images with LabelMe json ({shapes} polygons) -> {args.out}")
        return
    files = make_dataset(
        args.out, args.num_train, args.num_val, args.seed, args.keypoints, args.large_objects,
        args.single_class,
    )  # fmt: skip
    for split, path in files.items():
        with open(path, encoding="utf-8") as f:
            coco = json.load(f)
        print(
            f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} instances -> {path}"
        )


if __name__ == "__main__":
    sys.exit(run_tool(main))
