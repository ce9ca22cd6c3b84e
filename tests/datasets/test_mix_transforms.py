"""The augmentation recipes' transforms (issue 31): Mosaic, MixUp, RandomAffine,
YOLOXHSVRandomAug, CopyPaste, the large-scale-jitter steps (RandomResize, RandomCrop with
recompute_bbox, FilterAnnotations, Pad to a fixed size or a square) and MultiImageMixDataset.

Every geometric transform is checked on each field kind: boxes (and ignored boxes), bitmap
masks, polygon masks and keypoints move together (a box is the tight box of its mask, within
the tolerance measured for nearest-neighbour masks; labelled keypoints stay inside their
boxes, and the "left" point stays left of the "right" one through flips); where
mmdetection's rule is a cheap hand computation (Mosaic's placement at a given centre,
MixUp's canvas, RandomAffine's matrix, CopyPaste's occlusion) the output is compared to it.
"""

import math
import random

import cv2
import numpy as np
import pytest

from mmdet_like.datasets import DatasetError, MultiImageMixDataset
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.datasets.samplers import seeded_random
from mmdet_like.registry import PIPELINES, BuildError, RegistryError, build_from_cfg
from mmdet_like.structures.keypoints import KeypointMeta
from mmdet_like.structures.mask import BitmapMasks, PolygonMasks, masks_to_boxes

MASK_KINDS = ("bitmap", "polygon")
META = KeypointMeta(["left", "right", "center"])  # "left" and "right" swap under a flip
# a box and its mask's tight box after the masks moved (nearest neighbour at pixel centres:
# at most half a pixel apart); the largest difference measured over the random scenes below
# was 0.500 px for Mosaic, MixUp, RandomAffine (0.499) and LSJ, bitmap and polygon masks alike
TIGHT = 0.5 + 1e-3


def T(type, **kwargs):  # noqa: N802
    return build_from_cfg(dict(type=type, **kwargs), PIPELINES)


def scene(h, w, boxes, masks="bitmap", seed=0, ignore=(), color=None):
    """A results dict as LoadAnnotations leaves it: a (h, w, 3) uint8 image (random, or one
    ``color``), rectangular instances ``boxes`` with labels 0.., their masks (``masks``:
    bitmap or polygon), keypoints ``left`` / ``right`` / ``center`` inside each box, and
    ignored boxes ``ignore`` (labels 7)."""
    rng = np.random.default_rng(seed)
    if color is None:
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    else:
        img = np.full((h, w, 3), color, np.uint8)
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    if masks == "polygon":
        gt_masks = PolygonMasks([[[x1, y1, x2, y1, x2, y2, x1, y2]] for x1, y1, x2, y2 in boxes],
                                h, w)  # fmt: skip
    else:
        bitmaps = np.zeros((len(boxes), h, w), np.uint8)
        for m, (x1, y1, x2, y2) in zip(bitmaps, boxes.astype(int)):
            m[y1:y2, x1:x2] = 1
        gt_masks = BitmapMasks(bitmaps, h, w)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    quarter = (boxes[:, 2] - boxes[:, 0]) / 4
    two = np.full(len(boxes), 2.0)
    keypoints = np.stack([np.stack([boxes[:, 0] + quarter, cy, two], 1),
                          np.stack([boxes[:, 2] - quarter, cy, two], 1),
                          np.stack([cx, cy, two], 1)], 1).astype(np.float32)  # fmt: skip
    ignore = np.array(ignore, np.float32).reshape(-1, 4)
    return dict(
        img=img, img_shape=img.shape, ori_shape=img.shape, img_fields=["img"],
        gt_bboxes=boxes, gt_labels=np.arange(len(boxes), dtype=np.int64), gt_masks=gt_masks,
        gt_keypoints=keypoints.reshape(len(boxes), 3, 3), gt_bboxes_ignore=ignore,
        gt_labels_ignore=np.full(len(ignore), 7, np.int64),
        bbox_fields=["gt_bboxes", "gt_bboxes_ignore"], mask_fields=["gt_masks"],
        keypoint_fields=["gt_keypoints"], keypoint_meta=META, filename="x.png",
    )  # fmt: skip


def random_scene(rng, masks, seed, size=(16, 80), max_boxes=3):
    h, w = rng.integers(*size), rng.integers(*size)
    boxes = []
    for _ in range(rng.integers(0, max_boxes + 1)):
        x1, y1 = rng.integers(0, w - 4), rng.integers(0, h - 4)
        boxes.append((x1, y1, rng.integers(x1 + 4, w + 1), rng.integers(y1 + 4, h + 1)))
    ignore = [(0, 0, w / 2, h / 2)] if rng.random() < 0.5 else []
    return scene(int(h), int(w), boxes, masks, seed, ignore)


def check_fields(out, tight=True, tol=TIGHT):
    """Every field consistent with the others and with the image; returns the largest
    distance between a box and its mask's tight box."""
    n = len(out["gt_bboxes"])
    assert len(out["gt_labels"]) == len(out["gt_masks"]) == len(out["gt_keypoints"]) == n
    assert len(out["gt_bboxes_ignore"]) == len(out["gt_labels_ignore"])
    assert set(out["gt_labels_ignore"].tolist()) <= {7}
    h, w = out["img"].shape[:2]
    assert out["gt_masks"].shape == (h, w) and out["img_shape"][:2] == (h, w)
    for key in ("gt_bboxes", "gt_bboxes_ignore"):
        boxes = out[key]
        assert boxes.dtype == np.float32 and boxes.shape == (len(boxes), 4)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all(), key
    boxes = out["gt_bboxes"]
    bitmaps = out["gt_masks"].to_ndarray()
    assert bitmaps.shape == (n, h, w)
    present = bitmaps.any(axis=(1, 2))
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert (present | (sides < 1.5)).all()  # only a box thinner than ~a pixel loses its mask
    drawn = masks_to_boxes(bitmaps)[present]
    if tight:
        np.testing.assert_allclose(drawn, boxes[present], atol=tol)
    else:  # a warped box bounds its object
        assert (drawn[:, :2] >= boxes[present, :2] - tol).all()
        assert (drawn[:, 2:] <= boxes[present, 2:] + tol).all()
    kps = out["gt_keypoints"]
    assert kps.shape == (n, 3, 3) and kps.dtype == np.float32
    visible = kps[..., 2] > 0
    x, y = kps[..., 0], kps[..., 1]
    inside = (
        (x >= boxes[:, None, 0] - tol) & (x <= boxes[:, None, 2] + tol)
        & (y >= boxes[:, None, 1] - tol) & (y <= boxes[:, None, 3] + tol)
    )  # fmt: skip
    assert (inside | ~visible).all()
    assert (kps[~visible] == 0).all()
    both = visible[:, 0] & visible[:, 1]
    assert (x[both, 0] < x[both, 1]).all(), "left / right keypoints out of order"
    return float(np.abs(drawn - boxes[present]).max()) if present.any() else 0.0


# ------------------------------------------------------------------------- Mosaic


def test_mosaic_places_the_four_images_as_computed_by_hand():
    """img_scale (32, 32), centre ratio 0.75: the centre is (24, 24) on a 64 x 64 canvas.
    The four images (constant colours) and their boxes, resized to fit 32 x 32:
      A 16x16, x2: top left, pasted at [0, 24) x [0, 24) from its crop (8, 8, 32, 32);
        box (2, 4, 10, 12) -> (4, 8, 20, 24) - (8, 8) = (-4, 0, 12, 16) -> clipped (0, 0, 12, 16)
      B 32x16 (h x w), x1: top right, pasted at [24, 40) x [0, 24) from (0, 8, 16, 32);
        box (1, 10, 15, 30) + (24, -8) = (25, 2, 39, 22)
      C 8x8, x4: bottom left, pasted at [0, 24) x [24, 56) from (8, 0, 32, 32);
        box (0, 0, 8, 8) -> (0, 0, 32, 32) + (-8, 24) -> clipped (0, 24, 24, 56)
      D 20x40, x0.8 (32 x 16): bottom right, pasted at [24, 56) x [24, 40) from (0, 0, 32, 16);
        box (5, 5, 20, 15) -> (4, 4, 16, 12) + (24, 24) = (28, 28, 40, 36)
    """
    for kind in MASK_KINDS:
        results = scene(16, 16, [(2, 4, 10, 12)], kind, color=10)
        results["mix_results"] = [
            scene(32, 16, [(1, 10, 15, 30)], kind, color=20),
            scene(8, 8, [(0, 0, 8, 8)], kind, color=30),
            scene(20, 40, [(5, 5, 20, 15)], kind, color=40),
        ]
        mosaic = T("Mosaic", img_scale=(32, 32), center_ratio_range=(0.75, 0.75), pad_val=114)
        out = mosaic(results)
        img = out["img"]
        assert img.shape == (64, 64, 3) and out["img_shape"] == (64, 64, 3)
        expected = np.full((64, 64), 114)
        expected[0:24, 0:24] = 10
        expected[0:24, 24:40] = 20
        expected[24:56, 0:24] = 30
        expected[24:40, 24:56] = 40
        np.testing.assert_array_equal(img[..., 0], expected)
        np.testing.assert_array_equal(
            out["gt_bboxes"],
            [[0, 0, 12, 16], [25, 2, 39, 22], [0, 24, 24, 56], [28, 28, 40, 36]],
        )
        np.testing.assert_array_equal(out["gt_labels"], [0, 0, 0, 0])
        check_fields(out, tol=0.0)  # exact: integer scales and offsets
        # keypoints moved with their boxes: D's centre (12.5, 10) -> (34, 32)
        np.testing.assert_allclose(out["gt_keypoints"][3, 2], [34, 32, 2])
        # A's left point (4, 8) -> (8, 16) - (8, 8): on the border, still labelled
        np.testing.assert_allclose(out["gt_keypoints"][0, 0], [0, 8, 2])


def test_mosaic_moves_every_field_kind_consistently():
    worst = {}
    for kind in MASK_KINDS:
        rng = np.random.default_rng(0)
        for seed in range(25):
            results = random_scene(rng, kind, seed)
            results["mix_results"] = [random_scene(rng, kind, seed + 100 + i) for i in range(3)]
            size = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
            random.seed(seed)
            out = T("Mosaic", img_scale=size)(results)
            assert out["img"].shape == (2 * size[0], 2 * size[1], 3)
            worst[kind] = max(worst.get(kind, 0), check_fields(out))
    assert 0 < worst["bitmap"] <= TIGHT and worst["polygon"] <= TIGHT


def test_mosaic_is_seeded_and_keeps_empty_images_empty():
    def run(seed):
        results = scene(30, 40, [(2, 2, 20, 20)], seed=1)
        results["mix_results"] = [scene(30, 40, [(5, 5, 25, 25)], seed=i) for i in range(3)]
        random.seed(seed)
        return T("Mosaic", img_scale=(32, 32))(results)

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a["img"], b["img"])
    np.testing.assert_array_equal(a["gt_bboxes"], b["gt_bboxes"])
    assert not np.array_equal(a["gt_bboxes"], c["gt_bboxes"])  # another centre

    empty = scene(20, 20, [])
    empty["mix_results"] = [scene(20, 20, []) for _ in range(3)]
    out = T("Mosaic", img_scale=(16, 16))(empty)
    assert out["gt_bboxes"].shape == (0, 4) and out["gt_keypoints"].shape == (0, 3, 3)
    assert out["gt_masks"].to_ndarray().shape == (0, 32, 32)
    check_fields(out)


def test_mosaic_prob_filter_and_unclipped_boxes():
    results = scene(20, 20, [(0, 0, 20, 20)])
    results["mix_results"] = [scene(20, 20, [(0, 0, 20, 20)]) for _ in range(3)]
    same = T("Mosaic", img_scale=(16, 16), prob=0.0)(dict(results))
    assert same["img"].shape == (20, 20, 3)
    # a box pushed past the canvas: clipped by default, kept whole with bbox_clip_border=False
    random.seed(0)
    clip = T("Mosaic", img_scale=(16, 16), center_ratio_range=(0.5, 0.5))(dict(results))
    random.seed(0)
    free = T("Mosaic", img_scale=(16, 16), center_ratio_range=(0.5, 0.5),
             bbox_clip_border=False)(dict(results))  # fmt: skip
    # the top-left image (16 x 16 at centre (8, 8)) reaches from -8 to 8
    np.testing.assert_array_equal(clip["gt_bboxes"][0], [0, 0, 8, 8])
    np.testing.assert_array_equal(free["gt_bboxes"][0], [-8, -8, 8, 8])
    # skip_filter=False drops the boxes at most min_bbox_size wide or tall
    random.seed(0)
    filtered = T("Mosaic", img_scale=(16, 16), center_ratio_range=(0.5, 0.5),
                 skip_filter=False, min_bbox_size=8)(dict(results))  # fmt: skip
    sides = np.minimum(clip["gt_bboxes"][:, 2] - clip["gt_bboxes"][:, 0],
                       clip["gt_bboxes"][:, 3] - clip["gt_bboxes"][:, 1])  # fmt: skip
    assert len(filtered["gt_bboxes"]) == int((sides > 8).sum()) < len(clip["gt_bboxes"])
    check_fields(filtered)


def test_mosaic_errors_name_the_field_and_the_fix():
    with pytest.raises(BuildError, match=r"Mosaic: img_scale must be two positive integers"):
        T("Mosaic", img_scale=(640,))
    with pytest.raises(BuildError, match=r"Mosaic: center_ratio_range must be a \(lo, hi\)"):
        T("Mosaic", center_ratio_range=(1.5, 0.5))
    with pytest.raises(BuildError, match=r"Mosaic: prob must be a number in \[0, 1\]"):
        T("Mosaic", prob=2)
    with pytest.raises(KeyError, match="MultiImageMixDataset"):
        T("Mosaic", img_scale=(16, 16))(scene(20, 20, []))
    results = scene(20, 20, [(0, 0, 5, 5)])
    other = scene(20, 20, [(0, 0, 5, 5)])
    del other["gt_keypoints"]
    other["keypoint_fields"] = []
    results["mix_results"] = [other] * 3
    with pytest.raises(KeyError, match=r"Mosaic: the images to combine hold different fields"):
        T("Mosaic", img_scale=(16, 16))(results)
    mixed = scene(20, 20, [(0, 0, 5, 5)])
    mixed["mix_results"] = [scene(20, 20, [(0, 0, 5, 5)], "polygon")] * 3
    with pytest.raises(TypeError, match=r"Mosaic: results\['gt_masks'\]: masks of the images"):
        T("Mosaic", img_scale=(16, 16))(mixed)


class _PointKind:
    """A field kind without warp / cat."""

    results_key = "corner_fields"


def test_a_field_kind_without_warp_is_named():
    from mmdet_like.registry import FIELD_KINDS

    FIELD_KINDS.register("PointKindWithoutWarpForTest", force=True)(_PointKind)
    try:
        results = scene(20, 20, [(0, 0, 5, 5)])
        results.update(corners=np.zeros((1, 2), np.float32), corner_fields=["corners"])
        with pytest.raises(TypeError, match=r"RandomAffine: results\['corners'\] is of field "
                                            r"kind _PointKind, which has no warp\(\)"):  # fmt: skip
            T("RandomAffine")(results)
    finally:
        FIELD_KINDS._entries.pop("PointKindWithoutWarpForTest", None)


# ------------------------------------------------------------------------- MixUp


def test_mixup_canvas_and_boxes_as_computed_by_hand():
    """img_scale (32, 32), jitter 1: the other image (16 x 8, h x w) is scaled by 2 to 32 x 16
    at the top left of a 32 x 32 canvas of 114s, padded with zeros to this image's 40 x 60
    (no offset to draw); its box (1, 2, 5, 10) becomes (2, 4, 10, 20), or, flipped in the
    32-wide canvas, (22, 4, 30, 20)."""
    for kind in MASK_KINDS:
        for flip, box in ((0.0, [2, 4, 10, 20]), (1.0, [22, 4, 30, 20])):
            results = scene(40, 60, [(30, 10, 58, 38)], kind, color=100)
            results["mix_results"] = [scene(16, 8, [(1, 2, 5, 10)], kind, color=50)]
            out = T("MixUp", img_scale=(32, 32), ratio_range=(1, 1), flip_ratio=flip)(results)
            img = out["img"][..., 0]
            other_cols = slice(16, 32) if flip else slice(0, 16)
            pad_cols = slice(0, 16) if flip else slice(16, 32)
            assert (img[:32, other_cols] == 75).all()  # (100 + 50) / 2
            assert (img[:32, pad_cols] == 107).all()  # (100 + 114) / 2
            assert (img[32:] == 50).all() and (img[:, 32:] == 50).all()  # (100 + 0) / 2
            np.testing.assert_array_equal(out["gt_bboxes"], [[30, 10, 58, 38], box])
            check_fields(out, tol=0.0)


def test_mixup_moves_every_field_kind_and_swaps_flipped_keypoints():
    worst, dropped_all = {}, 0
    for kind in MASK_KINDS:
        rng = np.random.default_rng(1)
        for seed in range(25):
            results = random_scene(rng, kind, seed)
            other = random_scene(rng, kind, seed + 50, max_boxes=4)
            results["mix_results"] = [other]
            random.seed(seed)
            size = (int(rng.integers(16, 64)), int(rng.integers(16, 64)))
            out = T("MixUp", img_scale=size, ratio_range=(0.5, 1.5))(results)
            assert out["img"].shape == results["img"].shape
            worst[kind] = max(worst.get(kind, 0), check_fields(out))
            added = len(out["gt_bboxes"]) - len(scene_boxes(results))
            dropped_all += bool(len(other["gt_bboxes"]) and added == 0)
    assert worst["bitmap"] <= TIGHT and worst["polygon"] <= TIGHT
    assert dropped_all > 0  # some draws left all the other image's boxes outside the window


def scene_boxes(results):
    return [b for b in results["gt_bboxes"]]


def test_mixup_edge_cases_and_errors():
    results = scene(30, 30, [(2, 2, 10, 10)])
    results["mix_results"] = [scene(30, 30, [])]
    out = T("MixUp", img_scale=(32, 32))(dict(results))
    np.testing.assert_array_equal(out["img"], results["img"])  # an other image without boxes
    empty = scene(30, 30, [])
    empty["mix_results"] = [scene(30, 30, [(0, 0, 30, 30)])]
    random.seed(0)
    out = T("MixUp", img_scale=(30, 30), ratio_range=(1, 1))(empty)
    np.testing.assert_array_equal(out["gt_bboxes"], [[0, 0, 30, 30]])
    check_fields(out)
    with pytest.raises(KeyError, match=r"MixUp: needs results\['mix_results'\] with 1"):
        T("MixUp")(scene(30, 30, []))
    with pytest.raises(BuildError, match=r"MixUp: flip_ratio must be a number in \[0, 1\]"):
        T("MixUp", flip_ratio=-1)
    with pytest.raises(BuildError, match="MixUp: max_iters must be an integer >= 1"):
        T("MixUp", max_iters=0)
    no_meta = scene(30, 30, [(2, 2, 10, 10)])
    no_meta["mix_results"] = [scene(30, 30, [(2, 2, 10, 10)])]
    del no_meta["mix_results"][0]["keypoint_meta"]
    with pytest.raises(KeyError, match="flip pairs"):
        T("MixUp", img_scale=(30, 30), flip_ratio=1.0)(no_meta)


def test_mixup_filter_drops_what_the_crop_shrinks():
    """skip_filter=False: a box that keeps at most min_area_ratio of its canvas area in the
    window is dropped (mmdetection 2's rule); the same draws without the filter keep it."""
    kept = filtered = 0
    for seed in range(40):
        results = scene(20, 20, [])
        results["mix_results"] = [scene(40, 40, [(0, 0, 40, 40)])]
        random.seed(seed)
        plain = T("MixUp", img_scale=(40, 40), ratio_range=(1, 1))(dict(results))
        random.seed(seed)
        strict = T("MixUp", img_scale=(40, 40), ratio_range=(1, 1), skip_filter=False,
                   min_area_ratio=0.2)(dict(results))  # fmt: skip
        kept += len(plain["gt_bboxes"])
        filtered += len(strict["gt_bboxes"])
        # the window is 20 x 20 of the 40 x 40 box: 1/4 of its area, above 0.2: kept
        assert len(strict["gt_bboxes"]) == len(plain["gt_bboxes"]) == 1
    strict = T("MixUp", img_scale=(40, 40), ratio_range=(1, 1), skip_filter=False,
               min_area_ratio=0.3)  # fmt: skip
    results = scene(20, 20, [])
    results["mix_results"] = [scene(40, 40, [(0, 0, 40, 40)])]
    assert len(strict(results)["gt_bboxes"]) == 0  # 1/4 is below 0.3
    assert kept == filtered == 40


def test_mixup_get_indexes_looks_for_an_image_with_boxes():
    class Annotated:
        def __init__(self):
            self.reads = 0

        def __len__(self):
            return 10

        def get_ann_info(self, index):
            self.reads += 1
            return dict(bboxes=np.zeros((1 if index == 7 else 0, 4)))

    random.seed(0)
    dataset = Annotated()
    assert T("MixUp", max_iters=100).get_indexes(dataset) == 7
    dataset = Annotated()
    T("MixUp", max_iters=3).get_indexes(dataset)
    assert dataset.reads <= 3


# ------------------------------------------------------------------------- RandomAffine


def hand_affine(rotate, scale, shear_x, shear_y, tx, ty):
    """T @ Sh @ R @ S as written in mmdetection's docstring, in float64."""
    r = math.radians(rotate)
    rotation = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    shear = np.array([[1, math.tan(math.radians(shear_x)), 0],
                      [math.tan(math.radians(shear_y)), 1, 0], [0, 0, 1]])  # fmt: skip
    return (np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]) @ shear @ rotation
            @ np.diag([scale, scale, 1]))  # fmt: skip


def test_random_affine_matrix_image_and_boxes_as_computed_by_hand():
    affine = T("RandomAffine", max_rotate_degree=30, max_translate_ratio=0.2,
               scaling_ratio_range=(0.8, 1.2), max_shear_degree=5, border=(4, -6))  # fmt: skip
    results = scene(40, 60, [(4, 6, 20, 30), (30, 10, 58, 38)])
    img = results["img"].copy()
    random.seed(3)
    out = affine(results)
    draws = random.Random(3)
    rotate, scale = draws.uniform(-30, 30), draws.uniform(0.8, 1.2)
    shear_x, shear_y = draws.uniform(-5, 5), draws.uniform(-5, 5)
    height, width = 40 + 8, 60 - 12
    tx, ty = draws.uniform(-0.2, 0.2) * width, draws.uniform(-0.2, 0.2) * height
    matrix = hand_affine(rotate, scale, shear_x, shear_y, tx, ty)
    assert out["img"].shape == (height, width, 3)
    # the image: OpenCV's warp with the float32 matrix (the transform's precision)
    expected = cv2.warpPerspective(img, matrix.astype(np.float32), (width, height),
                                   borderValue=(114, 114, 114))  # fmt: skip
    np.testing.assert_array_equal(out["img"], expected)
    # the boxes: around the four moved corners, clipped
    for box, moved in zip([(4, 6, 20, 30), (30, 10, 58, 38)], out["gt_bboxes"]):
        x1, y1, x2, y2 = box
        corners = matrix @ np.array([[x1, x2, x2, x1], [y1, y1, y2, y2], [1, 1, 1, 1]])
        around = [corners[0].min(), corners[1].min(), corners[0].max(), corners[1].max()]
        around = np.clip(around, 0, [width, height, width, height])
        np.testing.assert_allclose(moved, around, atol=1e-3)


def test_random_affine_scaling_only_is_exact_and_rotation_bounds_the_masks():
    out = T("RandomAffine", max_rotate_degree=0, max_translate_ratio=0, max_shear_degree=0,
            scaling_ratio_range=(2, 2))(scene(40, 60, [(4, 6, 20, 30)]))  # fmt: skip
    np.testing.assert_array_equal(out["gt_bboxes"], [[8, 12, 40, 40]])  # (8, 12, 40, 60) clipped
    check_fields(out, tol=0.0)
    worst = {}
    for kind in MASK_KINDS:
        rng = np.random.default_rng(2)
        for seed in range(25):
            random.seed(seed)
            results = random_scene(rng, kind, seed, size=(24, 80))
            out = T("RandomAffine", max_rotate_degree=0, max_shear_degree=0)(dict(results))
            worst[kind] = max(worst.get(kind, 0), check_fields(out))
            rotated = T("RandomAffine", max_rotate_degree=25)(random_scene(rng, kind, seed))
            check_fields(rotated, tight=False)
    assert worst["bitmap"] <= TIGHT and worst["polygon"] <= TIGHT


def test_random_affine_filters_and_drops_all():
    results = scene(40, 60, [(4, 6, 20, 30), (30, 10, 58, 38)], ignore=[(0, 0, 10, 10)])
    shrink = dict(max_rotate_degree=0, max_translate_ratio=0, max_shear_degree=0,
                  scaling_ratio_range=(0.05, 0.05))  # fmt: skip
    kept = T("RandomAffine", **shrink)(dict(results))
    assert len(kept["gt_bboxes"]) == 2  # tiny but inside: kept without the filter
    gone = T("RandomAffine", skip_filter=False, **shrink)(dict(results))
    assert gone["gt_bboxes"].shape == (0, 4) and gone["gt_bboxes_ignore"].shape == (0, 4)
    assert gone["gt_keypoints"].shape == (0, 3, 3) and len(gone["gt_masks"]) == 0
    check_fields(gone)
    identity = dict(max_rotate_degree=0, max_shear_degree=0, max_translate_ratio=0,
                    scaling_ratio_range=(1, 1))  # fmt: skip
    moved_out = T("RandomAffine", border=(0, -20), **identity)(scene(40, 60, [(45, 5, 58, 20)]))
    assert moved_out["img"].shape == (40, 20, 3) and len(moved_out["gt_bboxes"]) == 0


def test_random_affine_errors():
    with pytest.raises(BuildError, match=r"RandomAffine: max_translate_ratio must be in \[0, 1\]"):
        T("RandomAffine", max_translate_ratio=1.5)
    with pytest.raises(BuildError, match=r"RandomAffine: scaling_ratio_range must be a \(lo, hi\)"):
        T("RandomAffine", scaling_ratio_range=(0, 1))
    with pytest.raises(BuildError, match="RandomAffine: border must be two integers"):
        T("RandomAffine", border=320)
    with pytest.raises(ValueError, match="RandomAffine: border=.* leaves no image"):
        T("RandomAffine", border=(-20, -20))(scene(40, 40, []))


# ------------------------------------------------------------------------- HSV


def test_yolox_hsv_aug_as_computed_by_hand_and_leaves_fields_alone():
    results = scene(20, 30, [(2, 2, 10, 10)])
    img = results["img"].copy()
    random.seed(5)
    out = T("YOLOXHSVRandomAug", hue_delta=5, saturation_delta=30, value_delta=30)(results)
    draws = random.Random(5)
    gains = [draws.uniform(-1, 1) * d for d in (5, 30, 30)]
    gains = [int(g * draws.randint(0, 1)) for g in gains]
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1:] = np.clip(hsv[..., 1:] + gains[1:], 0, 255)
    expected = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    np.testing.assert_array_equal(out["img"], expected)
    np.testing.assert_array_equal(out["gt_bboxes"], [[2, 2, 10, 10]])
    with pytest.raises(ValueError, match="YOLOXHSVRandomAug: needs a uint8"):
        T("YOLOXHSVRandomAug")(dict(results, img=img.astype(np.float32)))
    with pytest.raises(BuildError, match="YOLOXHSVRandomAug: hue_delta must be a number >= 0"):
        T("YOLOXHSVRandomAug", hue_delta=-1)


# ------------------------------------------------------------------------- CopyPaste


def test_copy_paste_occlusion_as_computed_by_hand():
    """This image: A (4, 6, 20, 30) and B (30, 10, 58, 38); pasted: C (12, 0, 30, 40).
    A keeps columns 4-12 (8 x 24 = 192 px), its box (4, 6, 12, 30) moved 8 px on one side;
    B loses nothing. With bbox_occluded_thr 5 A survives only if mask_occluded_thr < 192."""
    for kind in MASK_KINDS:
        for mask_thr, labels in ((300, [1, 0]), (100, [0, 1, 0])):
            results = scene(40, 60, [(4, 6, 20, 30), (30, 10, 58, 38)], kind, color=10)
            results["mix_results"] = [scene(40, 60, [(12, 0, 30, 40)], kind, color=200)]
            out = T("CopyPaste", selected=False, bbox_occluded_thr=5,
                    mask_occluded_thr=mask_thr)(results)  # fmt: skip
            assert isinstance(out["gt_masks"], BitmapMasks)
            np.testing.assert_array_equal(out["gt_labels"], labels)
            expected = [[30, 10, 58, 38], [12, 0, 30, 40]]
            if mask_thr == 100:
                expected = [[4, 6, 12, 30], *expected]
            np.testing.assert_array_equal(out["gt_bboxes"], expected)
            img = out["img"][..., 0]
            assert (img[:, 12:30] == 200).all() and (img[:, :12] == 10).all()
            check_fields(out, tol=0.0)
            # A's points, when A is kept: left (8, 18) visible; right (16, 18) under C and
            # outside A's new box: unlabelled; centre (12, 18) under C, on the box's edge: hidden
            if mask_thr == 100:
                np.testing.assert_array_equal(out["gt_keypoints"][0, :, 2], [2, 0, 1])


def test_copy_paste_selection_is_seeded_and_bounded():
    counts = []
    for seed in range(30):
        results = scene(40, 40, [(0, 0, 5, 5)])
        boxes = [(i * 4, 20, i * 4 + 4, 30) for i in range(10)]
        results["mix_results"] = [scene(40, 40, boxes)]
        random.seed(seed)
        out = T("CopyPaste", max_num_pasted=4)(results)
        counts.append(len(out["gt_bboxes"]) - 1)
        check_fields(out)
    assert set(counts) == {0, 1, 2, 3}  # k from 0 .. max_num_pasted - 1
    a, b = (scene(40, 40, [(0, 0, 5, 5)]) for _ in range(2))
    for r in (a, b):
        r["mix_results"] = [scene(40, 40, [(i * 4, 20, i * 4 + 4, 30) for i in range(10)])]
    random.seed(9)
    out_a = T("CopyPaste")(a)
    random.seed(9)
    out_b = T("CopyPaste")(b)
    np.testing.assert_array_equal(out_a["gt_bboxes"], out_b["gt_bboxes"])


def test_copy_paste_edge_cases_and_errors():
    results = scene(20, 20, [(0, 0, 5, 5)], ignore=[(0, 0, 2, 2)])
    results["mix_results"] = [scene(20, 20, [], ignore=[(5, 5, 9, 9)])]
    out = T("CopyPaste")(dict(results))
    np.testing.assert_array_equal(out["gt_bboxes"], [[0, 0, 5, 5]])
    results["mix_results"] = [scene(20, 20, [(10, 10, 20, 20)], ignore=[(5, 5, 9, 9)])]
    out = T("CopyPaste", selected=False)(dict(results))
    np.testing.assert_array_equal(out["gt_bboxes_ignore"], [[0, 0, 2, 2]])  # not pasted
    check_fields(out)
    results["mix_results"] = [scene(24, 20, [(10, 10, 20, 20)])]
    with pytest.raises(ValueError, match=r"CopyPaste: .* one size.*Pad\(size=\(h, w\)\)"):
        T("CopyPaste")(dict(results))
    no_masks = scene(20, 20, [(0, 0, 5, 5)])
    del no_masks["gt_masks"]
    no_masks["mix_results"] = [scene(20, 20, [(10, 10, 20, 20)])]
    with pytest.raises(KeyError, match="CopyPaste: this image has no gt_masks"):
        T("CopyPaste")(no_masks)
    with pytest.raises(BuildError, match="CopyPaste: max_num_pasted must be an integer >= 1"):
        T("CopyPaste", max_num_pasted=0)


# ------------------------------------------------------------------------- LSJ


def lsj(size=32, masks=True):
    return Compose([
        dict(type="RandomResize", scale=(size, size), ratio_range=(0.1, 2.0), keep_ratio=True),
        dict(type="RandomCrop", crop_type="absolute_range", crop_size=(size, size),
             recompute_bbox=masks, allow_negative_crop=True),
        dict(type="FilterAnnotations", min_gt_bbox_wh=(1e-2, 1e-2)),
        dict(type="RandomFlip", flip_ratio=0.5),
        dict(type="Pad", size=(size, size)),
    ])  # fmt: skip


def test_lsj_gives_fixed_size_images_with_consistent_fields():
    worst, sizes = {}, set()
    for kind in MASK_KINDS:
        rng = np.random.default_rng(3)
        pipeline = lsj()
        for seed in range(40):
            random.seed(seed)
            results = random_scene(rng, kind, seed, size=(20, 70))
            scaled = pipeline(results)
            if scaled is None:  # FilterAnnotations: every box filtered out
                continue
            assert scaled["img"].shape == (32, 32, 3) and scaled["pad_shape"] == (32, 32, 3)
            sizes.add(scaled["img_shape"][:2])
            worst[kind] = max(worst.get(kind, 0), check_fields(dict(scaled, img_shape=(32, 32))))
    assert len(sizes) > 5 and worst["bitmap"] <= TIGHT and worst["polygon"] <= TIGHT


def test_random_crop_recompute_bbox_takes_the_mask_box():
    """A loose box (0, 0, 40, 40) around a mask (10, 10)-(20, 30): after a crop the box is
    the cropped mask's tight box (without recompute_bbox it is the clipped loose box)."""
    for kind in MASK_KINDS:
        results = scene(40, 40, [(10, 10, 20, 30)], kind)
        results["gt_bboxes"] = np.array([[0, 0, 40, 40]], np.float32)
        random.seed(0)
        out = T("RandomCrop", crop_size=(30, 30), recompute_bbox=True)(dict(results))
        np.testing.assert_array_equal(out["gt_bboxes"], out["gt_masks"].get_bboxes())
        assert (out["gt_bboxes"][0, 2:] - out["gt_bboxes"][0, :2] <= [10, 20]).all()
        random.seed(0)
        loose = T("RandomCrop", crop_size=(30, 30))(dict(results))
        np.testing.assert_array_equal(loose["gt_bboxes"], [[0, 0, 30, 30]])
    no_masks = scene(40, 40, [(10, 10, 20, 30)])
    del no_masks["gt_masks"]
    no_masks["mask_fields"] = []
    with pytest.raises(KeyError, match=r"RandomCrop\(recompute_bbox=True\): .* no gt_masks"):
        T("RandomCrop", crop_size=(30, 30), recompute_bbox=True)(no_masks)


def test_random_resize_draws_its_scale():
    random.seed(0)
    jitter = T("RandomResize", scale=(100, 100), ratio_range=(0.5, 2.0), keep_ratio=True)
    sides = {max(jitter(scene(40, 80, []))["img"].shape[:2]) for _ in range(30)}
    assert min(sides) >= 50 and max(sides) <= 200 and len(sides) > 10
    two = T("RandomResize", scale=[(60, 30), (90, 50)])  # keep_ratio False: (w, h) drawn
    for _ in range(20):
        h, w = two(scene(40, 80, []))["img"].shape[:2]
        assert 60 <= w <= 90 and 30 <= h <= 50
    # an earlier scale does not stop it (mmcv's RandomResize always draws)
    out = jitter(dict(scene(40, 80, [(0, 0, 10, 10)]), scale=(10, 10)))
    assert max(out["img"].shape[:2]) >= 50
    with pytest.raises(BuildError, match=r"RandomResize: ratio_range must be a \(lo, hi\)"):
        T("RandomResize", scale=(100, 100), ratio_range=(2, 1))
    with pytest.raises(BuildError, match="RandomResize: without ratio_range, scale must be two"):
        T("RandomResize", scale=(100, 100))


def test_filter_annotations_rules():
    results = scene(40, 40, [(0, 0, 0.5, 20), (0, 0, 20, 20), (5, 5, 6, 30)])
    out = T("FilterAnnotations", min_gt_bbox_wh=(1, 1))(dict(results))
    np.testing.assert_array_equal(out["gt_labels"], [1])
    assert len(out["gt_masks"]) == 1 and out["gt_keypoints"].shape == (1, 3, 3)
    out = T("FilterAnnotations", min_gt_bbox_wh=(0, 0), by_mask=True,
            min_gt_mask_area=30)(dict(results))  # fmt: skip
    np.testing.assert_array_equal(out["gt_labels"], [1])  # the mask of box 0 is empty
    assert T("FilterAnnotations", min_gt_bbox_wh=(50, 50))(dict(results)) is None  # keep_empty
    kept = T("FilterAnnotations", min_gt_bbox_wh=(50, 50), keep_empty=False)(dict(results))
    assert kept["gt_bboxes"].shape == (0, 4)
    assert T("FilterAnnotations")(scene(10, 10, [])) is not None  # nothing to filter
    with pytest.raises(BuildError, match="FilterAnnotations: by_box and by_mask are both False"):
        T("FilterAnnotations", by_box=False)


def test_pad_fixed_size_square_and_pad_val_dict():
    out = T("Pad", size=(50, 70), pad_val=dict(img=114, seg=255))(scene(40, 60, [(0, 0, 5, 5)]))
    assert out["img"].shape == (50, 70, 3) and (out["img"][40:] == 114).all()
    assert out["gt_masks"].shape == (50, 70)
    square = T("Pad", pad_to_square=True, pad_val=dict(img=(1, 2, 3)))(scene(40, 60, []))
    assert square["img"].shape == (60, 60, 3)
    np.testing.assert_array_equal(square["img"][45, 10], [1, 2, 3])
    with pytest.raises(ValueError, match=r"Pad: results\['img'\] is 40x60, larger than size"):
        T("Pad", size=(32, 32))(scene(40, 60, []))
    with pytest.raises(BuildError, match="Pad: give exactly one of size"):
        T("Pad", size=(32, 32), pad_to_square=True)
    with pytest.raises(BuildError, match=r"Pad: pad_val has unknown keys \['mask'\]"):
        T("Pad", size_divisor=32, pad_val=dict(img=0, mask=0))
    with pytest.raises(BuildError, match=r"Pad: pad_val\['masks'\] = 1"):
        T("Pad", size_divisor=32, pad_val=dict(masks=1))


# ------------------------------------------------------------------------- the wrapper


class ListDataset:
    """A dataset of fixed scenes; counts the reads."""

    CLASSES = ("a", "b")

    def __init__(self, scenes):
        self.scenes = scenes
        self.flag = np.zeros(len(scenes), np.uint8)
        self.reads = []
        self.keypoint_meta = META

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.scenes[index]

    def get_ann_info(self, index):
        return dict(bboxes=self.scenes[index]["gt_bboxes"])

    def get_cat_ids(self, index):
        return np.unique(self.scenes[index]["gt_labels"])


def test_multi_image_mix_dataset_feeds_the_mixing_steps():
    scenes = [scene(30, 30, [(i, i, i + 10, i + 10)], seed=i) for i in range(6)]
    dataset = MultiImageMixDataset(
        ListDataset(scenes),
        [dict(type="Mosaic", img_scale=(16, 16)), dict(type="MixUp", img_scale=(32, 32)),
         dict(type="PackDetInputs", meta_keys=("img_shape",))],
    )  # fmt: skip
    assert len(dataset) == 6 and dataset.CLASSES == ("a", "b") and dataset.flag.shape == (6,)
    assert dataset.keypoint_meta is META  # the wrapped dataset's attributes
    np.testing.assert_array_equal(dataset.get_cat_ids(2), [0])
    with seeded_random(4):
        out = dataset[2]
    reads = dataset.dataset.reads
    assert reads[0] == 2 and len(reads) == 1 + 3 + 1  # the image, Mosaic's 3, MixUp's 1
    sample = out["data_samples"]
    assert out["img"].shape == (3, 32, 32) and sample.metainfo["img_shape"] == (32, 32, 3)
    boxes = sample.gt_instances.bboxes
    assert len(boxes) >= 1 and (boxes >= 0).all() and (boxes <= 32).all()
    assert "mix_results" not in scenes[2] and scenes[2]["img"].shape == (30, 30, 3)  # copies
    with seeded_random(4):
        again = dataset[2]
    np.testing.assert_array_equal(again["img"].numpy(), out["img"].numpy())
    dataset.update_skip_type_keys(["Mosaic", "MixUp"])
    plain = dataset[2]
    assert plain["img"].shape == (3, 30, 30)
    with pytest.raises(DatasetError, match=r"skip_type_keys \['Mosiac'\] name no step"):
        dataset.update_skip_type_keys(["Mosiac"])


def test_multi_image_mix_dataset_dynamic_scale_refetch_and_pipeline_switch():
    scenes = [scene(30, 30, [(2, 2, 4, 4)], seed=i) for i in range(3)]
    dataset = MultiImageMixDataset(
        ListDataset(scenes), [dict(type="Resize", img_scale=(60, 60), keep_ratio=True)],
        dynamic_scale=(20, 20),
    )  # fmt: skip
    assert dataset[0]["img"].shape == (20, 20, 3)  # the dynamic scale wins
    dataset.update_dynamic_scale((40, 40))
    assert dataset[0]["img"].shape == (40, 40, 3)
    dropping = MultiImageMixDataset(
        ListDataset(scenes), [dict(type="RandomCrop", crop_size=(2, 2))], max_refetch=3
    )
    random.seed(0)
    with pytest.raises(DatasetError, match="step RandomCrop returned None 3 times"):
        for i in range(3):
            dropping[i]
    # replacing the pipeline: PipelineSwitchHook assigns a Compose to the instance attribute
    # of the outermost dataset that has one in its __dict__
    assert "pipeline" in vars(dataset)
    dataset.pipeline = type(dataset.pipeline)([dict(type="Pad", size=(33, 33))])
    assert dataset[0]["img"].shape == (33, 33, 3)
    dataset.pipeline = [dict(type="RandomFlip", flip_ratio=1.0)]  # configs are built
    assert dataset[0]["img"].shape == (30, 30, 3) and dataset[0]["flip"]
    with pytest.raises(RegistryError, match="'Mosiac' is not in the PIPELINES registry. Did"):
        MultiImageMixDataset(ListDataset(scenes), [dict(type="Mosiac")])
    with pytest.raises(BuildError, match=r"MultiImageMixDataset.pipeline: pipeline\[0\] \(M"):
        MultiImageMixDataset(ListDataset(scenes), [dict(type="Mosaic", img_scale=1)])
    with pytest.raises(DatasetError, match="max_refetch must be an integer >= 1"):
        MultiImageMixDataset(ListDataset(scenes), [], max_refetch=0)
