import os
import random

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdet_like.datasets import DatasetError
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.registry import PIPELINES, build_from_cfg
from mmdet_like.structures.mask import BitmapMasks, PolygonMasks, masks_to_boxes


def T(type, **kwargs):  # noqa: N802
    return build_from_cfg(dict(type=type, **kwargs), PIPELINES)


def make_results(h=40, w=60, boxes=((4, 6, 20, 30), (30, 10, 58, 38)), polygons=False):
    img = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    if polygons:
        masks = PolygonMasks([[[x1, y1, x2, y1, x2, y2, x1, y2]] for x1, y1, x2, y2 in boxes], h, w)
    else:
        bitmaps = np.zeros((len(boxes), h, w), dtype=np.uint8)
        for m, (x1, y1, x2, y2) in zip(bitmaps, boxes.astype(int)):
            m[y1:y2, x1:x2] = 1
        masks = BitmapMasks(bitmaps, h, w)
    return dict(
        img=img, img_shape=img.shape, ori_shape=img.shape, img_fields=["img"],
        gt_bboxes=boxes.copy(), gt_labels=np.arange(len(boxes), dtype=np.int64),
        gt_masks=masks, bbox_fields=["gt_bboxes"], mask_fields=["gt_masks"],
        filename="x.png", ori_filename="x.png",
    )  # fmt: skip


# ------------------------------------------------------------------ loading


def test_load_image(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    results = dict(img_prefix=str(tmp_path), img_info=dict(id=1, filename="a.png"))
    out = T("LoadImageFromFile")(dict(results))
    assert out["img"].dtype == np.uint8 and out["img"].shape == (10, 12, 3)
    np.testing.assert_array_equal(out["img"], img)
    assert out["filename"] == str(tmp_path / "a.png") and out["ori_shape"] == (10, 12, 3)
    assert T("LoadImageFromFile", to_float32=True)(dict(results))["img"].dtype == np.float32
    gray = T("LoadImageFromFile", color_type="grayscale")(dict(results))["img"]
    assert gray.shape == (10, 12)


def test_load_image_missing_names_file_and_image_id(tmp_path):
    results = dict(img_prefix=str(tmp_path), img_info=dict(id=42, filename="nope.png"))
    with pytest.raises(DatasetError, match=r"nope.png, image id 42, field 'filename'"):
        T("LoadImageFromFile")(results)


def _ann_results():
    poly = [np.array([2, 2, 10, 2, 10, 8, 2, 8], dtype=np.float32)]
    return dict(
        img_info=dict(id=1, filename="a.png", width=16, height=12),
        ann_info=dict(
            bboxes=np.array([[2, 2, 10, 8]], np.float32),
            labels=np.array([3]),
            bboxes_ignore=np.zeros((0, 4), np.float32),
            masks=[poly],
        ),
    )


def test_load_annotations_bitmap_and_polygon():
    out = T("LoadAnnotations", with_mask=True)(_ann_results())
    assert out["gt_bboxes"].dtype == np.float32 and out["gt_labels"].dtype == np.int64
    assert out["bbox_fields"] == ["gt_bboxes", "gt_bboxes_ignore"]
    assert isinstance(out["gt_masks"], BitmapMasks) and out["gt_masks"].areas[0] == 48
    out = T("LoadAnnotations", with_mask=True, poly2mask=False)(_ann_results())
    assert isinstance(out["gt_masks"], PolygonMasks) and out["gt_masks"].areas[0] == 48
    out = T("LoadAnnotations", with_label=False)(_ann_results())
    assert "gt_labels" not in out and "gt_masks" not in out


def test_load_annotations_rle_needs_poly2mask():
    results = _ann_results()
    mask = np.zeros((12, 16), np.uint8)
    mask[1:3, 1:4] = 1
    from mmdet_like.structures.mask import bitmap_to_rle

    results["ann_info"]["masks"] = [bitmap_to_rle(mask)]
    out = T("LoadAnnotations", with_mask=True)(results)
    np.testing.assert_array_equal(out["gt_masks"].to_ndarray()[0], mask)
    with pytest.raises(DatasetError, match="poly2mask=True"):
        T("LoadAnnotations", with_mask=True, poly2mask=False)(_ann_results() | {
            "ann_info": results["ann_info"]})  # fmt: skip


def test_load_proposals():
    props = np.array([[0, 0, 5, 5, 0.9], [1, 1, 4, 4, 0.8], [2, 2, 3, 3, 0.1]], np.float32)
    out = T("LoadProposals", num_max_proposals=2)(dict(proposals=props, img_info=dict(id=1)))
    np.testing.assert_array_equal(out["proposals"], props[:2, :4])
    assert out["bbox_fields"] == ["proposals"]
    with pytest.raises(DatasetError, match="proposals"):
        T("LoadProposals")(dict(proposals=np.zeros((2, 3)), img_info=dict(id=1)))


# ------------------------------------------------------------------ transforms


def test_resize_keep_ratio():
    out = T("Resize", img_scale=(120, 60), keep_ratio=True)(make_results())
    assert out["img"].shape == (80, 120, 3) or out["img"].shape[:2] == (60, 90)
    # 60x40 image, bound (long 120, short 60): factor min(120/60, 60/40) = 1.5 -> 90x60
    assert out["img_shape"][:2] == (60, 90)
    np.testing.assert_allclose(out["scale_factor"], [1.5, 1.5, 1.5, 1.5])
    np.testing.assert_allclose(out["gt_bboxes"][0], [6, 9, 30, 45])
    assert out["gt_masks"].shape == (60, 90)
    np.testing.assert_allclose(out["gt_masks"].get_bboxes(), out["gt_bboxes"], atol=1)


def test_resize_exact_size_and_multiscale():
    out = T("Resize", img_scale=(30, 80), keep_ratio=False)(make_results())
    assert out["img"].shape == (80, 30, 3)
    np.testing.assert_allclose(out["scale_factor"], [0.5, 2, 0.5, 2])
    random.seed(0)
    r = T("Resize", img_scale=[(100, 50), (200, 80)], multiscale_mode="range")
    for _ in range(10):
        out = r(make_results())
        long, short = max(out["scale"]), min(out["scale"])
        assert 100 <= long <= 200 and 50 <= short <= 80
    v = T("Resize", img_scale=[(100, 50), (200, 80)], multiscale_mode="value")
    seen = {v(make_results())["scale"] for _ in range(30)}
    assert seen == {(100, 50), (200, 80)}
    out = T("Resize", img_scale=(60, 40), ratio_range=(2, 2), keep_ratio=False)(make_results())
    assert out["img"].shape == (80, 120, 3)


def test_random_flip_directions():
    out = T("RandomFlip", flip_ratio=1.0)(make_results())
    assert out["flip"] and out["flip_direction"] == "horizontal"
    np.testing.assert_array_equal(out["gt_bboxes"][0], [40, 6, 56, 30])
    np.testing.assert_array_equal(out["img"], make_results()["img"][:, ::-1])
    out = T("RandomFlip", flip_ratio=1.0, direction="vertical")(make_results())
    np.testing.assert_array_equal(out["gt_bboxes"][0], [4, 10, 20, 34])
    np.testing.assert_array_equal(out["gt_masks"].get_bboxes(), out["gt_bboxes"])
    out = T("RandomFlip", flip_ratio=0.0)(make_results())
    assert not out["flip"] and out["flip_direction"] is None
    np.testing.assert_array_equal(out["gt_bboxes"], make_results()["gt_bboxes"])
    with pytest.raises(Exception, match="unknown direction"):
        T("RandomFlip", direction="sideways")


def test_normalize():
    out = T("Normalize", mean=[1, 2, 3], std=[2, 2, 2], to_rgb=True)(make_results())
    img = make_results()["img"].astype(np.float32)
    np.testing.assert_allclose(out["img"], (img[..., ::-1] - [1, 2, 3]) / 2)
    assert out["img"].dtype == np.float32 and out["img_norm_cfg"]["to_rgb"] is True


def test_pad_size_divisor_and_size():
    out = T("Pad", size_divisor=32)(make_results())
    assert out["img"].shape == (64, 64, 3) and out["pad_shape"] == (64, 64, 3)
    assert out["img_shape"] == (40, 60, 3)
    assert out["gt_masks"].shape == (64, 64)
    assert out["img"][40:].sum() == 0
    out = T("Pad", size=(50, 70))(make_results())
    assert out["img"].shape == (50, 70, 3)
    with pytest.raises(Exception, match="exactly one"):
        T("Pad")


def test_photometric_distortion_changes_only_pixels():
    random.seed(1)
    base = make_results()
    out = T("PhotoMetricDistortion")(make_results())
    assert out["img"].dtype == np.float32 and out["img"].shape == base["img"].shape
    assert not np.allclose(out["img"], base["img"])
    np.testing.assert_array_equal(out["gt_bboxes"], base["gt_bboxes"])


def test_random_crop_shifts_clips_and_drops():
    random.seed(0)
    out = T("RandomCrop", crop_size=(20, 30))(make_results())
    assert out["img"].shape == (20, 30, 3)
    assert len(out["gt_bboxes"]) == len(out["gt_labels"]) == len(out["gt_masks"])
    np.testing.assert_allclose(out["gt_masks"].get_bboxes(), out["gt_bboxes"])
    # a single box far from any possible crop window -> None
    res = make_results(boxes=((0, 0, 2, 2),))
    random.seed(3)
    crop = T("RandomCrop", crop_size=(10, 10))
    outs = [crop(make_results(boxes=((0, 0, 2, 2),))) for _ in range(20)]
    assert any(o is None for o in outs)
    kept = T("RandomCrop", crop_size=(10, 10), allow_negative_crop=True)
    assert all(kept(make_results(boxes=((0, 0, 2, 2),))) is not None for _ in range(5))
    assert res is not None


def test_random_crop_types_draw_their_window_sizes():
    random.seed(0)
    rng = T("RandomCrop", crop_size=(15, 50), crop_type="absolute_range", allow_negative_crop=True)
    shapes = {rng(make_results())["img"].shape[:2] for _ in range(200)}
    # the 40 x 60 image: heights from 15..40 (capped by the image), widths from 15..50
    assert {h for h, _ in shapes} == set(range(15, 41))
    assert {w for _, w in shapes} == set(range(15, 51))
    out = T("RandomCrop", crop_size=(0.5, 0.25), crop_type="relative")(make_results())
    assert out["img"].shape[:2] == (20, 15)  # int(40 * 0.5 + 0.5), int(60 * 0.25 + 0.5)
    rel = T("RandomCrop", crop_size=(0.5, 0.5), crop_type="relative_range",
            allow_negative_crop=True)  # fmt: skip
    sizes = [rel(make_results())["img"].shape[:2] for _ in range(100)]
    assert all(20 <= h <= 40 and 30 <= w <= 60 for h, w in sizes)
    assert len(set(sizes)) > 10
    for out in (rng(make_results()), rel(make_results())):
        assert len(out["gt_bboxes"]) == len(out["gt_labels"]) == len(out["gt_masks"])
        np.testing.assert_allclose(out["gt_masks"].get_bboxes(), out["gt_bboxes"])
    with pytest.raises(Exception, match="crop_type must be one of"):
        T("RandomCrop", crop_size=(1, 2), crop_type="range")
    with pytest.raises(Exception, match=r"\(lo, hi\) with lo <= hi"):
        T("RandomCrop", crop_size=(600, 384), crop_type="absolute_range")
    with pytest.raises(Exception, match="fractions"):
        T("RandomCrop", crop_size=(2, 0.5), crop_type="relative")


def test_resize_override_draws_its_own_scale():
    results = T("Resize", img_scale=(120, 80), keep_ratio=True)(make_results())
    assert results["img_shape"][:2] == (80, 120) and results["scale"] == (120, 80)
    # without override the scale set earlier wins (as after MultiScaleFlipAug)
    again = T("Resize", img_scale=(30, 20), keep_ratio=True)(dict(results))
    assert again["img_shape"][:2] == (80, 120)
    second = T("Resize", img_scale=(30, 20), keep_ratio=True, override=True)(dict(results))
    assert second["img_shape"][:2] == (20, 30) and second["scale"] == (30, 20)
    np.testing.assert_allclose(second["scale_factor"], [0.25] * 4)  # this step's factor
    np.testing.assert_allclose(second["gt_bboxes"][0], np.array([4, 6, 20, 30]) / 2)


def test_resize_transformers_backend_sizes_and_dtype():
    from mmdet_like.datasets.pipelines.transforms import transformers_resize_shape

    # transformers' rule: the short side to 800 unless the long side passes 1333
    assert transformers_resize_shape(480, 640, 800, 1333) == (800, 1066)  # int(800 * 4 / 3)
    assert transformers_resize_shape(400, 1200, 800, 1333) == (444, 1333)  # round(444.33)
    assert transformers_resize_shape(1200, 400, 800, 1333) == (1333, 444)
    assert transformers_resize_shape(800, 900, 800, 1333) == (800, 900)  # kept as it is
    out = T("Resize", img_scale=(90, 30), keep_ratio=True, backend="transformers")(make_results())
    assert out["img"].dtype == np.uint8 and out["img_shape"][:2] == (30, 45)
    np.testing.assert_allclose(out["scale_factor"], [0.75] * 4)
    np.testing.assert_allclose(out["gt_bboxes"][0], np.array([4, 6, 20, 30]) * 0.75)
    # torchvision's antialiased bilinear resize of the uint8 image, as transformers runs it
    from torchvision.transforms.v2 import functional as tvF

    chw = torch.from_numpy(make_results()["img"]).permute(2, 0, 1).contiguous()
    want = tvF.resize(chw[None], [30, 45], antialias=True)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out["img"], want)
    with pytest.raises(Exception, match="backend must be one of"):
        T("Resize", backend="pil")


def test_random_choice_runs_one_sequence():
    choice = T(
        "RandomChoice",
        transforms=[
            [dict(type="Resize", img_scale=(120, 80), keep_ratio=True)],
            [dict(type="Resize", img_scale=(30, 20), keep_ratio=True),
             dict(type="RandomCrop", crop_size=(10, 10), allow_negative_crop=True)],
        ],
    )  # fmt: skip
    random.seed(0)
    shapes = {choice(make_results(boxes=((0, 0, 30, 40),)))["img"].shape[:2] for _ in range(30)}
    assert shapes == {(80, 120), (10, 10)}
    first = T("RandomChoice", transforms=[[dict(type="RandomFlip", flip_ratio=1.0)],
                                          [dict(type="RandomFlip", flip_ratio=0.0)]],
              prob=[1.0, 0.0])  # fmt: skip
    assert all(first(make_results())["flip"] for _ in range(10))
    # a sequence that drops the image returns None, as Compose
    drop = T("RandomChoice", transforms=[[dict(type="RandomCrop", crop_size=(2, 2))]])
    random.seed(3)
    outs = [drop(make_results(boxes=((0, 0, 2, 2),))) for _ in range(20)]
    assert any(o is None for o in outs)
    with pytest.raises(Exception, match="summing to 1"):
        T("RandomChoice", transforms=[[dict(type="RandomFlip")]], prob=[0.5])
    with pytest.raises(Exception, match="non-empty list"):
        T("RandomChoice", transforms=[])


def test_expand_places_image_on_canvas():
    random.seed(0)
    base = make_results()
    out = T("Expand", mean=(7, 8, 9), to_rgb=False, ratio_range=(2, 2), prob=1.0)(make_results())
    assert out["img"].shape == (80, 120, 3)
    left, top = (out["gt_bboxes"][0] - base["gt_bboxes"][0])[:2].astype(int)
    np.testing.assert_array_equal(out["img"][top : top + 40, left : left + 60], base["img"])
    np.testing.assert_array_equal(out["gt_masks"].get_bboxes(), out["gt_bboxes"])
    assert (out["img"][0, 0] == [7, 8, 9]).all() or (top == 0 and left == 0)


def test_min_iou_random_crop_keeps_instances_aligned():
    random.seed(0)
    for _ in range(10):
        out = T("MinIoURandomCrop")(make_results())
        h, w = out["img"].shape[:2]
        assert len(out["gt_bboxes"]) == len(out["gt_labels"]) == len(out["gt_masks"]) >= 1
        assert (out["gt_bboxes"][:, 2] <= w).all() and (out["gt_bboxes"][:, 3] <= h).all()
        np.testing.assert_allclose(out["gt_masks"].get_bboxes(), out["gt_bboxes"])


def test_format_bundle_and_collect():
    results = T("DefaultFormatBundle")(make_results())
    assert results["img"].dtype == torch.float32 and tuple(results["img"].shape) == (3, 40, 60)
    assert results["gt_bboxes"].dtype == torch.float32
    assert results["gt_labels"].dtype == torch.int64
    assert isinstance(results["gt_masks"], BitmapMasks)
    data = T("Collect", keys=["img", "gt_bboxes", "gt_labels"])(results)
    assert set(data) == {"img", "img_metas", "gt_bboxes", "gt_labels"}
    assert data["img_metas"]["ori_shape"] == (40, 60, 3) and data["img_metas"]["flip"] is False
    with pytest.raises(KeyError, match="gt_masks_x"):
        T("Collect", keys=["gt_masks_x"])(results)


def test_compose_stops_at_none():
    calls = []
    pipeline = Compose([lambda r: None, lambda r: calls.append(r)])
    assert pipeline({}) is None and calls == []


def test_multiscale_flip_aug():
    aug = T(
        "MultiScaleFlipAug",
        img_scale=[(60, 40), (120, 80)],
        flip=True,
        transforms=[
            dict(type="Resize", keep_ratio=True),
            dict(type="RandomFlip"),
            dict(type="Normalize", mean=[0, 0, 0], std=[1, 1, 1]),
            dict(type="Pad", size_divisor=32),
            dict(type="ImageToTensor", keys=["img"]),
            dict(type="Collect", keys=["img"]),
        ],
    )
    base = make_results()
    out = aug(base)
    assert len(out["img"]) == 4 and len(out["img_metas"]) == 4
    flips = [m["flip"] for m in out["img_metas"]]
    assert flips == [False, True, False, True]
    shapes = [m["img_shape"][:2] for m in out["img_metas"]]
    assert shapes == [(40, 60), (40, 60), (80, 120), (80, 120)]
    assert [tuple(i.shape) for i in out["img"]] == [(3, 64, 64)] * 2 + [(3, 96, 128)] * 2
    torch.testing.assert_close(out["img"][1][:, :40, :60], out["img"][0][:, :40, :60].flip(-1))
    assert "scale" not in base  # the input is not modified


# ------------------------------------------------------------------ property test

TRANSFORMS = st.sampled_from(["resize", "flip", "pad", "crop", "expand", "miniou"])


def _build(name, draw_seed):
    rnd = random.Random(draw_seed)
    if name == "resize":
        keep = rnd.random() < 0.5
        s = (rnd.randint(30, 120), rnd.randint(30, 120))
        return T("Resize", img_scale=s, keep_ratio=keep)
    if name == "flip":
        direction = rnd.choice(["horizontal", "vertical", "diagonal"])
        return T("RandomFlip", flip_ratio=1.0, direction=direction)
    if name == "pad":
        return T("Pad", size_divisor=rnd.choice([4, 8, 32]))
    if name == "crop":
        return T("RandomCrop", crop_size=(rnd.randint(8, 60), rnd.randint(8, 60)),
                 allow_negative_crop=True)  # fmt: skip
    if name == "expand":
        return T("Expand", ratio_range=(1, 2), prob=1.0)
    return T("MinIoURandomCrop", min_crop_size=0.5)


@st.composite
def scenes(draw):
    h, w = draw(st.integers(24, 64)), draw(st.integers(24, 64))
    n = draw(st.integers(1, 3))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, w - 6)), draw(st.integers(0, h - 6))
        x2, y2 = draw(st.integers(x1 + 5, w)), draw(st.integers(y1 + 5, h))
        boxes.append((x1, y1, x2, y2))
    return h, w, boxes


@settings(max_examples=int(os.environ.get("MMDET_LIKE_HYPOTHESIS_EXAMPLES", 60)), deadline=None)
@given(
    scene=scenes(),
    names=st.lists(TRANSFORMS, min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    polygons=st.booleans(),
)
def test_boxes_masks_image_stay_consistent(scene, names, seed, polygons):
    h, w, boxes = scene
    if names.count("resize") > 1:  # nearest-neighbour errors compound over resizes
        names = [n for n in names if n != "resize"] + ["resize"]
    random.seed(seed)
    results = make_results(h, w, boxes, polygons=polygons)
    for i, name in enumerate(names):
        results = _build(name, seed + i)(results)
    img_h, img_w = results["img"].shape[:2]
    masks = results["gt_masks"]
    assert masks.shape == results.get("pad_shape", results["img"].shape)[:2] == (img_h, img_w)
    assert len(results["gt_bboxes"]) == len(results["gt_labels"]) == len(masks)
    bitmaps = masks.to_ndarray()
    assert bitmaps.shape == (len(masks), img_h, img_w)
    boxes_out = results["gt_bboxes"]
    assert (boxes_out[:, 2] <= img_w + 1e-3).all()
    assert (boxes_out[:, 3] <= img_h + 1e-3).all()
    assert (boxes_out[:, 2] > boxes_out[:, 0]).all()
    drawn = masks_to_boxes(bitmaps)
    present = bitmaps.any(axis=(1, 2))
    # a mask may only vanish if its box is thinner than a pixel
    sizes = np.minimum(boxes_out[:, 2] - boxes_out[:, 0], boxes_out[:, 3] - boxes_out[:, 1])
    assert (present | (sizes < 1)).all()
    np.testing.assert_allclose(drawn[present], boxes_out[present], atol=1.0)


class _PointField:
    """A test field kind: (n, 2) ``[x, y]`` points, moved like box corners."""

    results_key = "point_fields"

    def resize(self, value, scale_factor, shape, results):
        return value * scale_factor[:2]

    def flip(self, value, shape, direction, results):
        out = value.copy()
        if direction in ("horizontal", "diagonal"):
            out[:, 0] = shape[1] - value[:, 0]
        if direction in ("vertical", "diagonal"):
            out[:, 1] = shape[0] - value[:, 1]
        return out

    def pad(self, value, shape, results):
        return value

    def crop(self, value, window, shape, results):
        return value - np.array(window[:2], dtype=value.dtype), None

    def expand(self, value, shape, top, left, results):
        return value + np.array([left, top], dtype=value.dtype)


def test_a_new_field_kind_is_one_registration_and_every_transform_moves_it():
    """Points registered as a field kind follow the box corners through resize, flip, pad,
    expand and crop without any transform naming them."""
    from mmdet_like.registry import FIELD_KINDS

    FIELD_KINDS.register("PointFieldForTest", force=True)(_PointField)
    img = np.zeros((40, 60, 3), np.uint8)
    boxes = np.array([[10, 5, 30, 25]], np.float32)
    results = dict(img=img, img_shape=img.shape, ori_shape=img.shape, gt_bboxes=boxes.copy(),
                   gt_labels=np.array([0]), bbox_fields=["gt_bboxes"],
                   corners=boxes.reshape(2, 2).copy(), point_fields=["corners"])  # fmt: skip
    pipeline = Compose([
        dict(type="Resize", img_scale=(120, 80), keep_ratio=True),
        dict(type="RandomFlip", flip_ratio=1.0, direction="horizontal"),
        dict(type="Expand", ratio_range=(1.5, 1.5), prob=1.0),
        dict(type="Pad", size_divisor=32),
    ])  # fmt: skip
    random.seed(0)
    out = pipeline(results)
    box = out["gt_bboxes"][0]
    # a horizontal flip swaps x1 and x2 of the corners; the box stays ordered
    np.testing.assert_allclose(out["corners"], [[box[2], box[1]], [box[0], box[3]]], atol=1e-4)
    from mmdet_like.datasets.pipelines.transforms import _crop_instances

    x1, y1 = int(box[0]) - 2, int(box[1]) - 3
    _crop_instances(out, x1, y1, int(box[2]) + 4, int(box[3]) + 4)
    box = out["gt_bboxes"][0]
    np.testing.assert_allclose(out["corners"], [[box[2], box[1]], [box[0], box[3]]], atol=1e-4)
    assert 2 <= box[0] < 3 and 3 <= box[1] < 4  # shifted by the window's corner
    # ... and arrives in the data sample's gt_instances, named after it, with no change to
    # PackDetInputs
    out.update(gt_corners=out["corners"][None], point_fields=["corners", "gt_corners"])
    sample = T("PackDetInputs", meta_keys=("img_shape", "flip"))(out)["data_samples"]
    assert sample.gt_instances.keys() == ["bboxes", "labels", "corners"]
    torch.testing.assert_close(sample.gt_instances.corners, torch.from_numpy(out["corners"][None]))
