"""How each kind of geometric annotation moves with the image: one table for every transform.

A field kind (``FIELD_KINDS``) says how a value of its kind is resized, flipped, padded,
cropped and placed on a larger canvas. Transforms never name boxes or masks: they move every
field of the results dict listed under each kind's ``results_key`` (``bbox_fields``,
``mask_fields``, ...) through :func:`geometric_fields`. A new kind of annotation (keypoints
with a flip map, rotated boxes) is one new class registered here; every transform then
moves it.

Each method takes the value and returns the moved value; ``crop`` also returns the
instances that keep an area (a bool array, or ``None`` where the kind does not decide it).
"""

import numpy as np

from mmdet_like.registry import FIELD_KINDS
from mmdet_like.structures.bbox import clip_bboxes, flip_bboxes
from mmdet_like.structures.keypoints import (
    crop_keypoints,
    flip_keypoints,
    resize_keypoints,
    shift_keypoints,
)


@FIELD_KINDS.register()
class BoxField:
    """(n, 4) float32 ``[x1, y1, x2, y2]`` arrays (``gt_bboxes``, ``gt_bboxes_ignore``,
    ``proposals``): scaled and clipped, flipped, shifted; a crop drops boxes left without
    area (not proposals)."""

    results_key = "bbox_fields"

    def resize(self, value, scale_factor, shape, results):
        return clip_bboxes(value * scale_factor, shape).astype(np.float32)

    def flip(self, value, shape, direction, results):
        return flip_bboxes(value, shape, direction)

    def pad(self, value, shape, results):
        return value

    def crop(self, value, window, shape, results):
        x1, y1 = window[0], window[1]
        shift = np.array([x1, y1, x1, y1], dtype=np.float32)
        boxes = clip_bboxes(value - shift, shape).astype(np.float32)
        return boxes, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])

    def expand(self, value, shape, top, left, results):
        return (value + np.array([left, top, left, top], dtype=np.float32)).astype(np.float32)


@FIELD_KINDS.register()
class MaskField:
    """``BitmapMasks`` / ``PolygonMasks`` (``gt_masks``): their own resize, flip, pad, crop
    and expand."""

    results_key = "mask_fields"

    def resize(self, value, scale_factor, shape, results):
        return value.resize(shape[:2])

    def flip(self, value, shape, direction, results):
        return value.flip(direction)

    def pad(self, value, shape, results):
        return value.pad(shape[:2])

    def crop(self, value, window, shape, results):
        return value.crop(np.asarray(window)), None

    def expand(self, value, shape, top, left, results):
        return value.expand(shape[0], shape[1], top, left)


@FIELD_KINDS.register()
class KeypointField:
    """(n, K, 3) float32 ``x, y, visibility`` arrays (``gt_keypoints``): scaled, flipped with
    the left / right pairs swapped (``results["keypoint_meta"]``, a
    :class:`~mmdet_like.structures.keypoints.KeypointMeta` set by the dataset), cropped,
    shifted; points that leave the image become unlabelled (visibility 0). The boxes decide
    which instances a crop keeps."""

    results_key = "keypoint_fields"

    def resize(self, value, scale_factor, shape, results):
        return resize_keypoints(value, scale_factor, shape)

    def flip(self, value, shape, direction, results):
        meta = results.get("keypoint_meta")
        if meta is None:
            raise KeyError(
                "RandomFlip: keypoints need the dataset's flip pairs (results['keypoint_meta']"
                ", set by a dataset with keypoints in pre_pipeline). Fix: load keypoints from "
                "a CocoDataset with keypoint categories, or a dataset whose config declares "
                "keypoint_meta=dict(names=..., flip_pairs=...)"
            )
        return flip_keypoints(value, shape, direction, meta)

    def pad(self, value, shape, results):
        return value

    def crop(self, value, window, shape, results):
        return crop_keypoints(value, window, shape), None

    def expand(self, value, shape, top, left, results):
        return shift_keypoints(value, left, top)


def geometric_fields(results):
    """``(key, kind)`` for every geometric field of ``results``, kind by kind in
    registration order (boxes, then masks, then kinds added later)."""
    out = []
    for name in FIELD_KINDS.names_in_order():
        kind = FIELD_KINDS.instance(name)
        out.extend((key, kind) for key in results.get(kind.results_key, []))
    return out
