"""Keypoints of instances: ``(n, K, 3)`` float32 arrays of ``x, y, visibility`` per keypoint
(COCO's convention: visibility 0 unlabelled, 1 labelled but hidden, 2 visible; coordinates
in pixels, continuous, so that a horizontal flip maps ``x`` to ``width - x`` as it maps a
box's edges), and what moves them with their image.

A keypoint set is described by :class:`KeypointMeta`: the names, the skeleton (pairs of
0-based indices), the pairs that swap under a horizontal flip (left / right) and under a
vertical flip, and the OKS sigmas of COCO's keypoint evaluation. COCO's person set is built
in (:data:`COCO_PERSON`); a custom dataset declares its own in its config.

Every function takes and returns numpy arrays (the pipeline's form); a point moved outside
the image, or cut off by a crop, becomes visibility 0 with coordinates 0, as unlabelled
points are in COCO files.
"""

import numpy as np

from mmdet_like.structures.bbox import project_points

COCO_PERSON_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# COCO's person skeleton, 1-based as in person_keypoints_*.json
COCO_PERSON_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
# OKS sigmas of COCO's keypoint evaluation (pycocotools' defaults), in the order above
COCO_PERSON_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107,
    0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip


def left_right_pairs(names):
    """``(i, j)`` index pairs of names that differ only by a ``left`` / ``right`` part
    (``left_eye`` / ``right_eye``, ``eye_left`` / ``eye_right``, ``l_...`` is not matched)."""
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        if "left" in name:
            j = index.get(name.replace("left", "right"))
            if j is not None:
                pairs.append((i, j))
    return tuple(pairs)


class KeypointMeta:
    """What a dataset says about its keypoints.

    Args:
        names: K keypoint names.
        skeleton: pairs of 0-based indices joined when drawn.
        flip_pairs: index pairs swapped by a horizontal flip (``None``: the ``left`` /
            ``right`` pairs of the names).
        vertical_flip_pairs: pairs swapped by a vertical flip (default none).
        sigmas: K OKS sigmas of the keypoint evaluation (``None``: COCO's for COCO's person
            set, else unset, and the keypoint metric asks for them).
    """

    def __init__(self, names, skeleton=(), flip_pairs=None, vertical_flip_pairs=(), sigmas=None):
        self.names = tuple(str(n) for n in names)
        k = len(self.names)
        if k == 0:
            raise ValueError("KeypointMeta: names is empty; a keypoint set needs its names")
        if len(set(self.names)) != k:
            raise ValueError(f"KeypointMeta: names must be unique, got {list(self.names)}")
        self.skeleton = self._pairs(skeleton, "skeleton")
        self.flip_pairs = (
            left_right_pairs(self.names)
            if flip_pairs is None
            else self._pairs(flip_pairs, "flip_pairs")
        )
        self.vertical_flip_pairs = self._pairs(vertical_flip_pairs, "vertical_flip_pairs")
        if sigmas is None and self.names == COCO_PERSON_NAMES:
            sigmas = COCO_PERSON_SIGMAS
        if sigmas is not None:
            sigmas = tuple(float(s) for s in sigmas)
            if len(sigmas) != k or any(not s > 0 for s in sigmas):
                raise ValueError(
                    f"KeypointMeta: sigmas must be {k} positive numbers (one per keypoint), "
                    f"got {list(sigmas)}"
                )
        self.sigmas = sigmas

    def _pairs(self, pairs, what):
        k = len(self.names)
        out = []
        for pair in pairs:
            if len(pair) != 2 or not all(isinstance(i, (int, np.integer)) for i in pair):
                raise ValueError(f"KeypointMeta: {what} must be pairs of indices, got {pair!r}")
            a, b = int(pair[0]), int(pair[1])
            if not (0 <= a < k and 0 <= b < k) or a == b:
                raise ValueError(
                    f"KeypointMeta: {what} pair {pair!r} is not two different indices in [0, {k})"
                )
            out.append((a, b))
        return tuple(out)

    @property
    def num_keypoints(self):
        return len(self.names)

    def flip_permutation(self, direction):
        """(K,) index array: the flipped set's keypoint k is the original's ``perm[k]``."""
        perm = np.arange(self.num_keypoints)
        maps = {
            "horizontal": (self.flip_pairs,),
            "vertical": (self.vertical_flip_pairs,),
            "diagonal": (self.flip_pairs, self.vertical_flip_pairs),
        }[direction]
        for pairs in maps:
            step = perm.copy()
            for a, b in pairs:
                step[a], step[b] = perm[b], perm[a]
            perm = step
        return perm

    def to_dict(self):
        """Plain types (for checkpoints' meta and results)."""
        return dict(
            names=list(self.names),
            skeleton=[list(p) for p in self.skeleton],
            flip_pairs=[list(p) for p in self.flip_pairs],
            vertical_flip_pairs=[list(p) for p in self.vertical_flip_pairs],
            sigmas=None if self.sigmas is None else list(self.sigmas),
        )

    def __eq__(self, other):
        return isinstance(other, KeypointMeta) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"KeypointMeta({self.num_keypoints} keypoints, {len(self.flip_pairs)} flip pairs)"


COCO_PERSON = KeypointMeta(
    COCO_PERSON_NAMES, skeleton=[(a - 1, b - 1) for a, b in COCO_PERSON_SKELETON]
)


def _hide_outside(keypoints, height, width):
    """Visibility 0 (and coordinates 0) for points outside ``[0, width] x [0, height]``."""
    x, y = keypoints[..., 0], keypoints[..., 1]
    outside = (x < 0) | (y < 0) | (x > width) | (y > height)
    keypoints[outside] = 0
    return keypoints


def _moved(keypoints, scale_x, scale_y, offset_x, offset_y):
    """Labelled points (visibility > 0) mapped ``x -> x * scale_x + offset_x`` (likewise
    ``y``); unlabelled points stay ``(0, 0, 0)``. A float32 copy."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    labelled = out[..., 2] > 0
    out[..., 0] = np.where(labelled, out[..., 0] * scale_x + offset_x, 0)
    out[..., 1] = np.where(labelled, out[..., 1] * scale_y + offset_y, 0)
    return out


def resize_keypoints(keypoints, scale_factor, shape):
    """(n, K, 3) keypoints scaled by ``scale_factor`` (``[w, h, w, h]`` or a number) into an
    image of ``shape`` (h, w, ...)."""
    factor = np.broadcast_to(np.asarray(scale_factor, dtype=np.float32).reshape(-1), (4,))
    return _hide_outside(_moved(keypoints, factor[0], factor[1], 0, 0), shape[0], shape[1])


def flip_keypoints(keypoints, shape, direction, meta):
    """(n, K, 3) keypoints of an image of ``shape`` flipped ``direction`` (``horizontal``,
    ``vertical``, ``diagonal``): coordinates mirrored and the keypoints reordered by the
    :class:`KeypointMeta`'s flip pairs."""
    height, width = shape[:2]
    mirror_x = direction in ("horizontal", "diagonal")
    mirror_y = direction in ("vertical", "diagonal")
    out = _moved(
        keypoints, -1 if mirror_x else 1, -1 if mirror_y else 1,
        width if mirror_x else 0, height if mirror_y else 0,
    )  # fmt: skip
    return out[:, meta.flip_permutation(direction)]


def crop_keypoints(keypoints, window, shape):
    """(n, K, 3) keypoints of the crop ``window`` ``(x1, y1, x2, y2)`` (the crop's ``shape``);
    points outside it become unlabelled."""
    out = _moved(keypoints, 1, 1, -window[0], -window[1])
    return _hide_outside(out, shape[0], shape[1])


def shift_keypoints(keypoints, left, top):
    """(n, K, 3) keypoints placed ``left``, ``top`` pixels into a larger canvas."""
    return _moved(keypoints, 1, 1, left, top)


def warp_keypoints(keypoints, matrix, shape):
    """(n, K, 3) keypoints moved by a 3x3 projective ``matrix`` into an image of ``shape``
    (h, w, ...); points that land outside become unlabelled."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    labelled = out[..., 2] > 0
    moved = project_points(out[..., :2].reshape(-1, 2), matrix).reshape(out[..., :2].shape)
    out[..., :2] = np.where(labelled[..., None], moved, 0)
    return _hide_outside(out, shape[0], shape[1])
