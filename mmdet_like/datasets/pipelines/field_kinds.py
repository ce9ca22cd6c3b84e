"""How each kind of geometric annotation moves with the image: one table for every transform.

A field kind (``FIELD_KINDS``) says how a value of its kind is resized, flipped, padded,
cropped and placed on a larger canvas. Transforms never name boxes or masks: they move every
field of the results dict listed under each kind's ``results_key`` (``bbox_fields``,
``mask_fields``, ...) through :func:`geometric_fields`. A new kind of annotation (keypoints
with a flip map, rotated boxes) is one new class registered here; every transform then
moves it.

Each method takes the value and returns the moved value; ``crop`` and ``warp`` also return
the instances that keep an area (a bool array, or ``None`` where the kind does not decide
it). ``warp`` moves a value by a 3x3 projective matrix (continuous coordinates: point ``(x,
y)`` goes to ``M @ (x, y, 1)``) into an image of a given shape: the multi-image and affine
transforms (``Mosaic``, ``MixUp``, ``RandomAffine``) move every field through it, and
``cat`` joins the values of several images placed on one canvas.
"""

import numpy as np

from mmdet_like.registry import FIELD_KINDS
from mmdet_like.structures.bbox import clip_bboxes, flip_bboxes, warp_bboxes
from mmdet_like.structures.keypoints import (
    crop_keypoints,
    flip_keypoints,
    resize_keypoints,
    shift_keypoints,
    warp_keypoints,
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

    def warp(self, value, matrix, shape, results, clip=True):
        """The box around each box's projected corners (clipped to ``shape`` with
        ``clip``); an instance stays where its box still covers some of the image."""
        boxes = warp_bboxes(value, matrix)
        h, w = shape[0], shape[1]
        inside = (np.minimum(boxes[:, 2], w) > np.maximum(boxes[:, 0], 0)) & (
            np.minimum(boxes[:, 3], h) > np.maximum(boxes[:, 1], 0)
        )
        return (clip_bboxes(boxes, shape) if clip else boxes), inside

    def cat(self, values):
        return np.concatenate([np.asarray(v, np.float32).reshape(-1, 4) for v in values])


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

    def warp(self, value, matrix, shape, results, clip=True):
        return value.warp(matrix, shape[:2]), None

    def cat(self, values):
        kinds = {type(v).__name__ for v in values}
        if len(kinds) != 1:
            raise TypeError(
                f"masks of the images to combine are of different kinds {sorted(kinds)}. Fix: "
                "load them alike (LoadAnnotations with one poly2mask setting)"
            )
        return type(values[0]).cat(values)


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

    def warp(self, value, matrix, shape, results, clip=True):
        """Points projected; a matrix that mirrors also swaps the flip pairs, as
        :meth:`flip` does (an axis-aligned mirror only: which pairs a skewed mirror would
        swap is undefined)."""
        out = warp_keypoints(value, matrix, shape)
        direction = _mirror_direction(matrix)
        if direction is None:
            return out, None
        meta = results.get("keypoint_meta")
        if meta is None:
            raise KeyError(
                "a mirroring transform (MixUp's flip) of keypoints needs the dataset's flip "
                "pairs (results['keypoint_meta']). Fix: load keypoints from a dataset with "
                "keypoint_meta, or set the transform's flip_ratio=0"
            )
        return out[:, meta.flip_permutation(direction)], None

    def cat(self, values):
        counts = {np.shape(v)[1:] for v in values}
        if len(counts) != 1:
            raise ValueError(
                f"keypoints of the images to combine have different shapes {sorted(counts)} "
                "(n, K, 3): every image needs the dataset's K keypoints"
            )
        return np.concatenate([np.asarray(v, np.float32) for v in values])


def _mirror_direction(matrix):
    """The flip a 3x3 matrix contains: ``None`` (none), ``"horizontal"`` (x mirrored),
    ``"vertical"`` or ``"diagonal"`` (both); a mirror that is not axis-aligned is an error."""
    m = np.asarray(matrix, dtype=np.float64)
    aligned = not (m[0, 1] or m[1, 0] or m[2, 0] or m[2, 1])
    if aligned:
        mirror_x, mirror_y = m[0, 0] < 0, m[1, 1] < 0
        if mirror_x or mirror_y:
            return "diagonal" if mirror_x and mirror_y else "horizontal" if mirror_x else "vertical"
        return None
    if np.linalg.det(m[:2, :2]) < 0:
        raise ValueError(
            f"keypoints: the matrix {m.tolist()} mirrors and skews at once; which left / right "
            "pairs it swaps is undefined. Fix: mirror with RandomFlip, not in the warp"
        )
    return None


def geometric_fields(results):
    """``(key, kind)`` for every geometric field of ``results``, kind by kind in
    registration order (boxes, then masks, then kinds added later)."""
    out = []
    for name in FIELD_KINDS.names_in_order():
        kind = FIELD_KINDS.instance(name)
        out.extend((key, kind) for key in results.get(kind.results_key, []))
    return out
