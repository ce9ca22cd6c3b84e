"""The multi-image and affine augmentations of the YOLOX and copy-paste recipes: ``Mosaic``,
``MixUp``, ``CopyPaste``, ``RandomAffine`` and ``YOLOXHSVRandomAug`` (mmdetection 3.3's
semantics, with mmdetection 2's optional box filters).

``Mosaic``, ``MixUp`` and ``CopyPaste`` combine an image with others that they read from
``results["mix_results"]``: :class:`~mmdet_like.datasets.MultiImageMixDataset` fills it,
asking each transform's ``get_indexes(dataset)`` which images it wants (and loading them
through the wrapped dataset's pipeline).

Every geometric field moves through its field kind (``field_kinds.py``): each image's boxes,
ignored boxes, masks (bitmap or polygon) and keypoints move by the same 3x3 matrix as its
pixels (the kind's ``warp``), instances that end up outside the image are dropped with their
labels, masks and keypoints, and the fields of the combined images are joined (the kind's
``cat``). Random draws use Python's ``random`` (seeded per sample by the data loader).
"""

import math
import random

import cv2
import mmcv
import numpy as np

from mmdet_like.datasets.pipelines.field_kinds import geometric_fields
from mmdet_like.datasets.pipelines.transforms import _companions, _keep, _range_pair
from mmdet_like.registry import PIPELINES
from mmdet_like.structures.bbox import clip_bboxes, warp_bboxes
from mmdet_like.structures.mask import BitmapMasks, masks_to_boxes


def translation_matrix(x, y):
    """3x3 float32 matrix moving points by ``(x, y)``."""
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], dtype=np.float32)


def scaling_matrix(sx, sy=None):
    """3x3 float32 matrix scaling x by ``sx`` and y by ``sy`` (default ``sx``)."""
    sy = sx if sy is None else sy
    return np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], dtype=np.float32)


def rotation_matrix(degrees):
    """3x3 float32 matrix rotating by ``degrees`` about the origin (the image's top-left
    corner; positive turns x towards y)."""
    r = math.radians(degrees)
    return np.array(
        [[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]],
        dtype=np.float32,
    )


def shear_matrix(x_degrees, y_degrees):
    """3x3 float32 matrix shearing x by ``tan(x_degrees) * y`` and y by ``tan(y_degrees) *
    x``."""
    return np.array(
        [[1, math.tan(math.radians(x_degrees)), 0], [math.tan(math.radians(y_degrees)), 1, 0],
         [0, 0, 1]],
        dtype=np.float32,
    )  # fmt: skip


def _kind_method(kind, key, name, owner):
    method = getattr(kind, name, None)
    if method is None:
        raise TypeError(
            f"{owner}: results[{key!r}] is of field kind {type(kind).__name__}, which has no "
            f"{name}(); {owner} moves every field by a matrix and joins the fields of several "
            "images. Fix: give the kind warp(value, matrix, shape, results, clip=True) -> "
            "(value, valid or None) and cat(values), or leave the field out of the results"
        )
    return method


def _warp_instances(results, matrix, shape, clip, owner, extra_valid=None):
    """Move every geometric field of ``results`` by ``matrix`` into an image of ``shape``
    (boxes clipped to it with ``clip``), then drop the instances that left it (with their
    labels, masks and keypoints); ``extra_valid(key, before, after)`` may drop more
    (a bool array per box field, or ``None``)."""
    validity, before = {}, {}
    for key, kind in geometric_fields(results):
        warp = _kind_method(kind, key, "warp", owner)
        before[key] = results[key]
        results[key], valid = warp(results[key], matrix, shape, results, clip=clip)
        if valid is not None and key != "proposals":
            validity[key] = valid
    for key in validity:
        more = None if extra_valid is None else extra_valid(key, before[key], results[key])
        if more is not None:
            validity[key] = validity[key] & more
    for key, valid in validity.items():
        _keep(results, key, valid)


def _instance_keys(results):
    """The per-instance keys of ``results``: every geometric field, and the labels that
    follow the box fields (``gt_labels``, ``gt_labels_ignore``)."""
    keys = [key for key, _ in geometric_fields(results)]
    for key in results.get("bbox_fields", []):
        keys += [k for k in _companions(results, key) if k in results and k not in keys]
    return keys


def _join_instances(results, parts, owner):
    """Set ``results``' per-instance fields to those of ``parts`` (results dicts whose fields
    lie on one canvas) joined in order."""
    keys = _instance_keys(parts[0])
    kinds = dict(geometric_fields(parts[0]))
    for i, part in enumerate(parts[1:], 1):
        other = _instance_keys(part)
        if set(other) != set(keys):
            raise KeyError(
                f"{owner}: the images to combine hold different fields: image 0 has "
                f"{sorted(keys)}, image {i} has {sorted(other)}. Fix: load every image with "
                "the same pipeline (the wrapped dataset's)"
            )
    for key in keys:
        values = [part[key] for part in parts]
        if key in kinds:
            try:
                results[key] = _kind_method(kinds[key], key, "cat", owner)(values)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{owner}: results[{key!r}]: {exc}") from None
        else:
            results[key] = np.concatenate([np.asarray(v) for v in values])


def _mix_results(results, count, owner):
    mix = results.get("mix_results")
    if mix is None or len(mix) != count:
        got = "none" if mix is None else f"{len(mix)}"
        raise KeyError(
            f"{owner}: needs results['mix_results'] with {count} other image(s), got {got}. "
            f"Fix: put {owner} in the pipeline of a MultiImageMixDataset (data.train=dict("
            "type='MultiImageMixDataset', dataset=..., pipeline=[...])), which loads them "
            "through the transform's get_indexes"
        )
    return mix


def _only_img_field(results, owner):
    fields = results.get("img_fields", ["img"])
    if list(fields) != ["img"]:
        raise ValueError(
            f"{owner}: combines results['img'] only, but img_fields is {fields}. Fix: drop the "
            "other image fields before it"
        )


def _image_pair(value, owner, name):
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
    if not ok:
        raise ValueError(f"{owner}: {name} must be two positive integers (h, w), got {value!r}")
    return int(value[0]), int(value[1])


def _probability(value, owner, name):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"{owner}: {name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _box_candidates(before, after, min_bbox_size, min_area_ratio, max_aspect_ratio):
    """mmdetection 2's box filter: (n,) bool, True where the moved box ``after`` is wider
    and taller than ``min_bbox_size``, keeps more than ``min_area_ratio`` of the area of
    ``before`` and has an aspect ratio (long / short side) below ``max_aspect_ratio``."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (
        (w2 > min_bbox_size)
        & (h2 > min_bbox_size)
        & (w2 * h2 / (w1 * h1 + 1e-16) > min_area_ratio)
        & (aspect < max_aspect_ratio)
    )


def _resize_keep_ratio(img, height, width):
    """``img`` resized by ``min(height / h, width / w)`` with each side truncated
    (mmdetection's mosaic and mixup resize); returns the image and its x, y factors."""
    h, w = img.shape[:2]
    scale = min(height / h, width / w)
    size = (int(w * scale), int(h * scale))
    out = mmcv.imresize(img, size) if size != (w, h) else img
    return out, out.shape[1] / w, out.shape[0] / h


MOSAIC_LOCATIONS = ("top_left", "top_right", "bottom_left", "bottom_right")


@PIPELINES.register()
class Mosaic:
    """Four images on one ``2h x 2w`` canvas, around a random centre (YOLOX's mosaic).

    Each image is resized to fit ``img_scale`` (keeping its aspect ratio), then placed in
    one quadrant with its corner at the centre: the image itself top left, the three of
    ``results["mix_results"]`` top right, bottom left, bottom right; what extends past the
    canvas is cut off. The centre is ``(int(u * w), int(v * h))`` with ``u`` and ``v``
    drawn from ``center_ratio_range``.

    Args:
        img_scale: ``(h, w)`` of one quadrant (mmdetection 3's order); the output is
            ``(2h, 2w)``.
        center_ratio_range: ``(lo, hi)`` of the centre's position, in quadrant sizes.
        min_bbox_size, skip_filter: with ``skip_filter=False``, drop the boxes (with their
            instances) whose width or height is at most ``min_bbox_size`` (mmdetection 2).
        bbox_clip_border: clip boxes to the canvas (else they keep the parts outside).
        pad_val: fill of the canvas outside the four images.
        prob: probability of applying it (else the image passes unchanged).

    Every field of each image moves with its pixels (boxes by the image's actual scale
    per axis, then the paste offset); instances that end outside the canvas are dropped.
    Sets ``img``, ``img_shape``, ``pad_shape``; needs MultiImageMixDataset, which calls
    :meth:`get_indexes`.
    """

    def __init__(
        self, img_scale=(640, 640), center_ratio_range=(0.5, 1.5), min_bbox_size=0,
        bbox_clip_border=True, skip_filter=True, pad_val=114, prob=1.0,
    ):  # fmt: skip
        self.img_scale = _image_pair(img_scale, "Mosaic", "img_scale")
        self.center_ratio_range = _range_pair(center_ratio_range, "Mosaic", "center_ratio_range")
        self.min_bbox_size = min_bbox_size
        self.bbox_clip_border = bbox_clip_border
        self.skip_filter = skip_filter
        self.pad_val = pad_val
        self.prob = _probability(prob, "Mosaic", "prob")

    def get_indexes(self, dataset):
        """Three random images of ``dataset`` (repeats allowed)."""
        return [random.randrange(len(dataset)) for _ in range(3)]

    def placement(self, location, center, tile_wh):
        """Where a resized image of size ``tile_wh = (w, h)`` goes for ``location`` (one of
        :data:`MOSAIC_LOCATIONS`) and canvas centre ``center = (x, y)``.

        Returns:
            ``(paste, crop)``: integer ``(x1, y1, x2, y2)`` windows of the canvas and of the
            image; ``canvas[paste] = image[crop]``.
        """
        cx, cy = center
        w, h = tile_wh
        canvas_h, canvas_w = 2 * self.img_scale[0], 2 * self.img_scale[1]
        if location == "top_left":
            x1, y1, x2, y2 = max(cx - w, 0), max(cy - h, 0), cx, cy
            crop = (w - (x2 - x1), h - (y2 - y1), w, h)
        elif location == "top_right":
            x1, y1, x2, y2 = cx, max(cy - h, 0), min(cx + w, canvas_w), cy
            crop = (0, h - (y2 - y1), min(w, x2 - x1), h)
        elif location == "bottom_left":
            x1, y1, x2, y2 = max(cx - w, 0), cy, cx, min(cy + h, canvas_h)
            crop = (w - (x2 - x1), 0, w, min(y2 - y1, h))
        elif location == "bottom_right":
            x1, y1, x2, y2 = cx, cy, min(cx + w, canvas_w), min(cy + h, canvas_h)
            crop = (0, 0, min(w, x2 - x1), min(y2 - y1, h))
        else:
            raise ValueError(
                f"Mosaic: location must be one of {MOSAIC_LOCATIONS}, got {location!r}"
            )
        return (x1, y1, x2, y2), crop

    def __call__(self, results):
        if random.random() >= self.prob:
            return results
        mix = _mix_results(results, 3, "Mosaic")
        _only_img_field(results, "Mosaic")
        img = results["img"]
        height, width = self.img_scale
        canvas = np.full((2 * height, 2 * width, *img.shape[2:]), self.pad_val, dtype=img.dtype)
        center = (
            int(random.uniform(*self.center_ratio_range) * width),
            int(random.uniform(*self.center_ratio_range) * height),
        )
        parts = []
        for location, source in zip(MOSAIC_LOCATIONS, [results, *mix]):
            tile, sx, sy = _resize_keep_ratio(source["img"], height, width)
            if tile.shape[2:] != img.shape[2:]:
                raise ValueError(
                    f"Mosaic: the images have different channels ({img.shape} and "
                    f"{tile.shape}). Fix: load them with one color_type"
                )
            paste, crop = self.placement(location, center, (tile.shape[1], tile.shape[0]))
            (px1, py1, px2, py2), (cx1, cy1, cx2, cy2) = paste, crop
            canvas[py1:py2, px1:px2] = tile[cy1:cy2, cx1:cx2]
            matrix = translation_matrix(px1 - cx1, py1 - cy1) @ scaling_matrix(sx, sy)
            part = dict(source)
            _warp_instances(part, matrix, canvas.shape, self.bbox_clip_border, "Mosaic")
            parts.append(part)
        _join_instances(results, parts, "Mosaic")
        if not self.skip_filter and "gt_bboxes" in results:
            boxes = results["gt_bboxes"]
            _keep(results, "gt_bboxes", (boxes[:, 2] - boxes[:, 0] > self.min_bbox_size)
                  & (boxes[:, 3] - boxes[:, 1] > self.min_bbox_size))  # fmt: skip
        results["img"] = canvas
        results["img_shape"] = canvas.shape
        results["pad_shape"] = canvas.shape
        return results

    def __repr__(self):
        return (
            f"Mosaic(img_scale={self.img_scale}, center_ratio_range={self.center_ratio_range}, "
            f"min_bbox_size={self.min_bbox_size}, bbox_clip_border={self.bbox_clip_border}, "
            f"skip_filter={self.skip_filter}, pad_val={self.pad_val}, prob={self.prob})"
        )


def _gt_box_count(dataset, index):
    """How many boxes image ``index`` has, from its annotations when the dataset gives them
    (no image read)."""
    if hasattr(dataset, "get_ann_info"):
        return len(dataset.get_ann_info(index)["bboxes"])
    return len(dataset[index]["gt_bboxes"])


@PIPELINES.register()
class MixUp:
    """Blend the image half and half with another (YOLOX's mixup), taking the union of
    their instances.

    The other image (``results["mix_results"][0]``, one with boxes when :meth:`get_indexes`
    finds one in ``max_iters`` draws) is resized to fit ``img_scale`` (keeping its aspect
    ratio) at the top left of a ``pad_val`` canvas of that size; the canvas is scaled by a
    factor drawn from ``ratio_range`` and flipped horizontally with probability
    ``flip_ratio``, padded with zeros to at least this image's size, and a window of this
    image's size at a random offset is blended in. An other image without boxes leaves the
    image unchanged.

    Args:
        img_scale: ``(h, w)`` of the canvas (mmdetection's ``dynamic_scale``).
        ratio_range: ``(lo, hi)`` of the canvas' scale jitter.
        flip_ratio: probability of the horizontal flip.
        pad_val: the canvas' fill.
        max_iters: draws of :meth:`get_indexes` to find an image with boxes.
        min_bbox_size, min_area_ratio, max_aspect_ratio, skip_filter: with
            ``skip_filter=False``, drop the other image's boxes (with their instances) whose
            width or height is at most ``min_bbox_size``, that keep at most
            ``min_area_ratio`` of their area on the canvas, or whose aspect ratio reaches
            ``max_aspect_ratio`` (mmdetection 2).
        bbox_clip_border: clip boxes to the image.

    The blend is ``0.5 * img + 0.5 * other`` in float32, cast back to the image's dtype
    (truncating, as mmdetection's cast to uint8).
    """

    def __init__(
        self, img_scale=(640, 640), ratio_range=(0.5, 1.5), flip_ratio=0.5, pad_val=114,
        max_iters=15, min_bbox_size=5, min_area_ratio=0.2, max_aspect_ratio=20,
        bbox_clip_border=True, skip_filter=True,
    ):  # fmt: skip
        self.dynamic_scale = _image_pair(img_scale, "MixUp", "img_scale")
        self.ratio_range = _range_pair(ratio_range, "MixUp", "ratio_range")
        self.flip_ratio = _probability(flip_ratio, "MixUp", "flip_ratio")
        self.pad_val = pad_val
        if not isinstance(max_iters, int) or isinstance(max_iters, bool) or max_iters < 1:
            raise ValueError(f"MixUp: max_iters must be an integer >= 1, got {max_iters!r}")
        self.max_iters = max_iters
        self.min_bbox_size = min_bbox_size
        self.min_area_ratio = min_area_ratio
        self.max_aspect_ratio = max_aspect_ratio
        self.bbox_clip_border = bbox_clip_border
        self.skip_filter = skip_filter

    def get_indexes(self, dataset):
        """A random image of ``dataset`` with boxes (the last of ``max_iters`` draws if none
        has any)."""
        for _ in range(self.max_iters):
            index = random.randrange(len(dataset))
            if _gt_box_count(dataset, index):
                break
        return index

    def __call__(self, results):
        (other,) = _mix_results(results, 1, "MixUp")
        _only_img_field(results, "MixUp")
        if "gt_bboxes" not in other:
            raise KeyError(
                "MixUp: the other image has no gt_bboxes. Fix: LoadAnnotations(with_bbox=True) "
                "in the wrapped dataset's pipeline"
            )
        if len(other["gt_bboxes"]) == 0:
            return results
        jitter = random.uniform(*self.ratio_range)
        flip = random.random() < self.flip_ratio
        height, width = self.dynamic_scale
        other_img = other["img"]
        resized, sx, sy = _resize_keep_ratio(other_img, height, width)
        canvas = np.full((height, width, *other_img.shape[2:]), self.pad_val, other_img.dtype)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        canvas = mmcv.imresize(canvas, (int(width * jitter), int(height * jitter)))
        canvas_h, canvas_w = canvas.shape[:2]
        sx, sy = sx * canvas_w / width, sy * canvas_h / height
        if flip:
            canvas = canvas[:, ::-1]
        img = results["img"]
        if canvas.shape[2:] != img.shape[2:]:
            raise ValueError(
                f"MixUp: the images have different channels ({img.shape} and {canvas.shape}). "
                "Fix: load them with one color_type"
            )
        target_h, target_w = img.shape[:2]
        padded = np.zeros((max(canvas_h, target_h), max(canvas_w, target_w), *img.shape[2:]),
                          dtype=canvas.dtype)  # fmt: skip
        padded[:canvas_h, :canvas_w] = canvas
        y_offset = random.randrange(padded.shape[0] - target_h) if padded.shape[0] > target_h else 0
        x_offset = random.randrange(padded.shape[1] - target_w) if padded.shape[1] > target_w else 0
        window = padded[y_offset : y_offset + target_h, x_offset : x_offset + target_w]

        on_canvas = scaling_matrix(sx, sy)
        if flip:
            on_canvas = np.array([[-1, 0, canvas_w], [0, 1, 0], [0, 0, 1]], np.float32) @ on_canvas
        matrix = translation_matrix(-x_offset, -y_offset) @ on_canvas

        def candidates(key, before, after):
            if self.skip_filter or key != "gt_bboxes":
                return None
            boxes = warp_bboxes(before, on_canvas)
            if self.bbox_clip_border:
                boxes = clip_bboxes(boxes, (canvas_h, canvas_w))
            return _box_candidates(boxes, after, self.min_bbox_size, self.min_area_ratio,
                                   self.max_aspect_ratio)  # fmt: skip

        other = dict(other)
        _warp_instances(other, matrix, img.shape, self.bbox_clip_border, "MixUp", candidates)
        _join_instances(results, [results, other], "MixUp")
        mixed = 0.5 * img.astype(np.float32) + 0.5 * window.astype(np.float32)
        results["img"] = mixed.astype(img.dtype)
        results["img_shape"] = results["img"].shape
        return results

    def __repr__(self):
        return (
            f"MixUp(img_scale={self.dynamic_scale}, ratio_range={self.ratio_range}, "
            f"flip_ratio={self.flip_ratio}, pad_val={self.pad_val}, max_iters={self.max_iters}, "
            f"min_bbox_size={self.min_bbox_size}, min_area_ratio={self.min_area_ratio}, "
            f"max_aspect_ratio={self.max_aspect_ratio}, bbox_clip_border="
            f"{self.bbox_clip_border}, skip_filter={self.skip_filter})"
        )


@PIPELINES.register()
class RandomAffine:
    """A random rotation, scaling, shear and translation of the image and every field
    (mmdetection's ``RandomAffine``, YOLOX's random perspective without perspective).

    The matrix is ``T @ Sh @ R @ S`` (float32), drawn in this order: the rotation
    ``R`` by ``uniform(-max_rotate_degree, max_rotate_degree)`` degrees, the scaling ``S``
    by ``uniform(*scaling_ratio_range)``, the shear ``Sh`` by ``uniform(-max_shear_degree,
    max_shear_degree)`` degrees in x then in y, the translation ``T`` by
    ``uniform(-max_translate_ratio, max_translate_ratio)`` times the output width, then
    height; rotation and scaling are about the image's top-left corner. The output is the
    input's size plus ``2 * border`` (``(h, w)``; YOLOX passes ``-img_scale // 2`` to cut a
    mosaic back to one quadrant's size), filled with ``border_val`` where nothing maps.

    Boxes become the box around their four warped corners (clipped with
    ``bbox_clip_border``): a bound of the object, not its tight box, after a rotation or
    shear. Masks and keypoints warp exactly; instances left outside the image are dropped;
    with ``skip_filter=False`` also those whose box is at most ``min_bbox_size`` wide or
    tall, keeps at most ``min_area_ratio`` of its scaled area, or whose aspect ratio
    reaches ``max_aspect_ratio`` (mmdetection 2's filter; every box field).
    """

    def __init__(
        self, max_rotate_degree=10.0, max_translate_ratio=0.1, scaling_ratio_range=(0.5, 1.5),
        max_shear_degree=2.0, border=(0, 0), border_val=(114, 114, 114), min_bbox_size=2,
        min_area_ratio=0.2, max_aspect_ratio=20, bbox_clip_border=True, skip_filter=True,
    ):  # fmt: skip
        if not isinstance(max_translate_ratio, (int, float)) or not 0 <= max_translate_ratio <= 1:
            raise ValueError(
                f"RandomAffine: max_translate_ratio must be in [0, 1], got {max_translate_ratio!r}"
            )
        for name, value in (("max_rotate_degree", max_rotate_degree),
                            ("max_shear_degree", max_shear_degree)):  # fmt: skip
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"RandomAffine: {name} must be a number >= 0, got {value!r}")
        self.scaling_ratio_range = _range_pair(
            scaling_ratio_range, "RandomAffine", "scaling_ratio_range"
        )
        if (
            not isinstance(border, (tuple, list))
            or len(border) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in border)
        ):
            raise ValueError(
                f"RandomAffine: border must be two integers (h, w) (YOLOX: (-h // 2, -w // 2) "
                f"of the mosaic's img_scale), got {border!r}"
            )
        self.max_rotate_degree = max_rotate_degree
        self.max_translate_ratio = max_translate_ratio
        self.max_shear_degree = max_shear_degree
        self.border = tuple(border)
        self.border_val = border_val
        self.min_bbox_size = min_bbox_size
        self.min_area_ratio = min_area_ratio
        self.max_aspect_ratio = max_aspect_ratio
        self.bbox_clip_border = bbox_clip_border
        self.skip_filter = skip_filter

    def random_matrix(self, height, width):
        """Draw the warp for an output of ``height`` x ``width``: (3x3 float32 matrix, the
        scaling ratio)."""
        rotation = rotation_matrix(random.uniform(-self.max_rotate_degree, self.max_rotate_degree))
        ratio = random.uniform(*self.scaling_ratio_range)
        shear = shear_matrix(
            random.uniform(-self.max_shear_degree, self.max_shear_degree),
            random.uniform(-self.max_shear_degree, self.max_shear_degree),
        )
        translation = translation_matrix(
            random.uniform(-self.max_translate_ratio, self.max_translate_ratio) * width,
            random.uniform(-self.max_translate_ratio, self.max_translate_ratio) * height,
        )
        return translation @ shear @ rotation @ scaling_matrix(ratio), ratio

    def __call__(self, results):
        _only_img_field(results, "RandomAffine")
        img = results["img"]
        height = img.shape[0] + 2 * self.border[0]
        width = img.shape[1] + 2 * self.border[1]
        if height < 1 or width < 1:
            raise ValueError(
                f"RandomAffine: border={self.border} leaves no image of a {img.shape[0]}x"
                f"{img.shape[1]} input ({height}x{width}). Fix: a border above -side / 2 (put "
                "it after the Mosaic whose img_scale it halves)"
            )
        matrix, ratio = self.random_matrix(height, width)
        results["img"] = cv2.warpPerspective(img, matrix, dsize=(width, height),
                                             borderValue=self.border_val)  # fmt: skip
        results["img_shape"] = results["img"].shape
        results["pad_shape"] = results["img"].shape

        def candidates(key, before, after):
            if self.skip_filter:
                return None
            return _box_candidates(np.asarray(before, np.float32) * ratio, after,
                                   self.min_bbox_size, self.min_area_ratio,
                                   self.max_aspect_ratio)  # fmt: skip

        _warp_instances(results, matrix, (height, width), self.bbox_clip_border, "RandomAffine",
                        candidates)  # fmt: skip
        return results

    def __repr__(self):
        return (
            f"RandomAffine(max_rotate_degree={self.max_rotate_degree}, max_translate_ratio="
            f"{self.max_translate_ratio}, scaling_ratio_range={self.scaling_ratio_range}, "
            f"max_shear_degree={self.max_shear_degree}, border={self.border}, border_val="
            f"{self.border_val}, min_bbox_size={self.min_bbox_size}, min_area_ratio="
            f"{self.min_area_ratio}, max_aspect_ratio={self.max_aspect_ratio}, "
            f"bbox_clip_border={self.bbox_clip_border}, skip_filter={self.skip_filter})"
        )


@PIPELINES.register()
class YOLOXHSVRandomAug:
    """YOLOX's colour jitter of a uint8 BGR image: hue, saturation and value each shifted,
    with probability 1/2, by ``int(uniform(-1, 1) * delta)`` (hue modulo 180, OpenCV's
    range; the others clipped to [0, 255]). Geometric fields are untouched.

    Args:
        hue_delta, saturation_delta, value_delta: the largest shifts.
    """

    def __init__(self, hue_delta=5, saturation_delta=30, value_delta=30):
        deltas = {"hue_delta": hue_delta, "saturation_delta": saturation_delta,
                  "value_delta": value_delta}  # fmt: skip
        for name, value in deltas.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"YOLOXHSVRandomAug: {name} must be a number >= 0, got {value!r}")
        self.hue_delta = hue_delta
        self.saturation_delta = saturation_delta
        self.value_delta = value_delta

    def __call__(self, results):
        img = results["img"]
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"YOLOXHSVRandomAug: needs a uint8 (H, W, 3) BGR image, got {img.dtype} "
                f"{img.shape}. Fix: put it before Normalize, and load images without to_float32"
            )
        deltas = (self.hue_delta, self.saturation_delta, self.value_delta)
        gains = np.array([random.uniform(-1, 1) * d for d in deltas])
        gains *= [random.randint(0, 1) for _ in range(3)]
        gains = gains.astype(np.int16)
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
        results["img"] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
        return results

    def __repr__(self):
        return (
            f"YOLOXHSVRandomAug(hue_delta={self.hue_delta}, saturation_delta="
            f"{self.saturation_delta}, value_delta={self.value_delta})"
        )


def _bitmap(masks):
    return masks if isinstance(masks, BitmapMasks) else masks.to_bitmap()


@PIPELINES.register()
class CopyPaste:
    """Simple copy-paste (Ghiasi et al. 2021): paste instances of another image of the same
    size onto this one, with their masks, boxes, labels and keypoints.

    The other image is ``results["mix_results"][0]``; with ``selected``, a random subset of
    its instances is pasted (``k`` drawn from ``0 .. min(n, max_num_pasted - 1)``), else all.
    Where the pasted masks cover this image's pixels, its masks lose them; its boxes become
    the tight boxes of what is left, and an instance is dropped unless its box moved at
    most ``bbox_occluded_thr`` pixels on every side or at least ``mask_occluded_thr + 1``
    pixels of its mask remain. Its keypoints under a pasted mask become hidden (visibility
    1), those outside its new box unlabelled. Ignored boxes of the other image are not
    pasted (their pixels are not).

    Both images must have the same size (LSJ: a fixed ``Pad(size=...)`` in the wrapped
    dataset's pipeline) and ``gt_masks``; polygon masks are rasterised, so the output masks
    are ``BitmapMasks``.
    """

    def __init__(self, max_num_pasted=100, bbox_occluded_thr=10, mask_occluded_thr=300,
                 selected=True):  # fmt: skip
        if (
            not isinstance(max_num_pasted, int)
            or isinstance(max_num_pasted, bool)
            or (max_num_pasted < 1)
        ):
            raise ValueError(
                f"CopyPaste: max_num_pasted must be an integer >= 1, got {max_num_pasted!r}"
            )
        self.max_num_pasted = max_num_pasted
        self.bbox_occluded_thr = bbox_occluded_thr
        self.mask_occluded_thr = mask_occluded_thr
        self.selected = selected

    def get_indexes(self, dataset):
        """One random image of ``dataset``."""
        return random.randrange(len(dataset))

    def __call__(self, results):
        (source,) = _mix_results(results, 1, "CopyPaste")
        _only_img_field(results, "CopyPaste")
        for name, part in (("this image", results), ("the other image", source)):
            if "gt_masks" not in part or "gt_bboxes" not in part:
                raise KeyError(
                    f"CopyPaste: {name} has no gt_masks / gt_bboxes. Fix: "
                    "LoadAnnotations(with_bbox=True, with_mask=True) in the wrapped dataset's "
                    "pipeline"
                )
        img, src_img = results["img"], source["img"]
        channels = img.shape[2:]
        shapes = {
            tuple(img.shape), tuple(src_img.shape), (*results["gt_masks"].shape, *channels),
            (*source["gt_masks"].shape, *channels),
        }  # fmt: skip
        if len(shapes) != 1:
            raise ValueError(
                f"CopyPaste: the images and masks must have one size, got {sorted(shapes)}. "
                "Fix: end the wrapped dataset's pipeline with a fixed-size Pad(size=(h, w)) "
                "(as LSJ does)"
            )
        source = dict(source)
        source["gt_masks"] = _bitmap(source["gt_masks"])
        results["gt_masks"] = _bitmap(results["gt_masks"])
        if self.selected:
            count = len(source["gt_bboxes"])
            k = random.randrange(min(count + 1, self.max_num_pasted))
            chosen = np.zeros(count, dtype=bool)
            chosen[random.sample(range(count), k)] = True
            _keep(source, "gt_bboxes", chosen)
        if len(source["gt_bboxes"]) == 0:
            return results
        for key in ("gt_bboxes_ignore", "proposals"):  # no pixels of these are pasted
            if key in source:
                _keep(source, key, np.zeros(len(source[key]), dtype=bool))

        pasted = source["gt_masks"].masks.any(axis=0)
        masks = results["gt_masks"].masks * ~pasted
        boxes = masks_to_boxes(masks)
        moved = np.abs(boxes - results["gt_bboxes"]) <= self.bbox_occluded_thr
        keep = moved.all(axis=1) | (masks.sum(axis=(1, 2)) > self.mask_occluded_thr)
        results["gt_masks"] = BitmapMasks(masks, *pasted.shape)
        results["gt_bboxes"] = boxes
        for key in results.get("keypoint_fields", []):
            if key.startswith("gt_"):
                results[key] = _occlude_keypoints(results[key], pasted, boxes)
        _keep(results, "gt_bboxes", keep)
        _join_instances(results, [results, source], "CopyPaste")
        results["img"] = np.where(pasted[..., None] if img.ndim == 3 else pasted, src_img, img)
        return results

    def __repr__(self):
        return (
            f"CopyPaste(max_num_pasted={self.max_num_pasted}, bbox_occluded_thr="
            f"{self.bbox_occluded_thr}, mask_occluded_thr={self.mask_occluded_thr}, "
            f"selected={self.selected})"
        )


def _occlude_keypoints(keypoints, covered, boxes):
    """(n, K, 3) keypoints of instances now boxed by (n, 4) ``boxes`` (what is left of them
    visible): visibility 2 lowered to 1 where the (h, w) bool ``covered`` is set under the
    point; a point outside its instance's box becomes unlabelled (0, 0, 0), as the datasets
    annotate points a keypoint head, which predicts inside the box, cannot place."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    h, w = covered.shape
    cols = np.clip(np.floor(out[..., 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(out[..., 1]).astype(np.int64), 0, h - 1)
    hidden = (out[..., 2] == 2) & covered[rows, cols]
    out[..., 2] = np.where(hidden, 1, out[..., 2])
    x, y = out[..., 0], out[..., 1]
    outside = (
        (x < boxes[:, None, 0]) | (x > boxes[:, None, 2])
        | (y < boxes[:, None, 1]) | (y > boxes[:, None, 3])
    )  # fmt: skip
    out[outside] = 0
    return out
