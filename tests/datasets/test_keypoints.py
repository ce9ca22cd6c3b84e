"""Keypoints from a COCO file to the data sample: the keypoint set of the categories and the
config (names, skeleton, flip pairs, sigmas), the checks of each annotation's keypoints
(errors naming the file, the annotation and the field), and the field kind that moves them
with their image (resize, flips with left / right swapped, crop, expand, pad)."""

import json
import random

import numpy as np
import pytest
import torch

from mmdet_like.datasets import CocoDataset, DatasetError
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.structures.keypoints import (
    COCO_PERSON,
    KeypointMeta,
    crop_keypoints,
    flip_keypoints,
    resize_keypoints,
)
from tests.datasets.tiny_data import write_image

NAMES = ["nose", "left_hand", "right_hand"]


def kp(*points):
    """(K, 3) from (x, y, v) triples."""
    return np.asarray(points, np.float32).reshape(-1, 3)


def coco_keypoint_dict():
    """2 images of 64 x 48; category 1 "person" with 3 keypoints, category 2 "ball" without."""
    images = [dict(id=1, file_name="a.png", width=64, height=48),
              dict(id=2, file_name="b.png", width=64, height=48)]  # fmt: skip
    anns = [
        dict(id=11, image_id=1, category_id=1, bbox=[10, 5, 30, 30], area=900, iscrowd=0,
             keypoints=[20, 8, 2, 12, 30, 1, 36, 30, 2], num_keypoints=3),
        dict(id=12, image_id=1, category_id=2, bbox=[45, 30, 10, 10], area=100, iscrowd=0),
        dict(id=13, image_id=2, category_id=1, bbox=[0, 0, 20, 40], area=800, iscrowd=0,
             keypoints=[5, 5, 2, 0, 0, 0, 15, 20, 2], num_keypoints=2),
        dict(id=14, image_id=2, category_id=1, bbox=[30, 0, 30, 40], area=1200, iscrowd=1,
             keypoints=[0] * 9, num_keypoints=0),
    ]  # fmt: skip
    cats = [
        dict(id=1, name="person", keypoints=NAMES, skeleton=[[1, 2], [1, 3]]),
        dict(id=2, name="ball"),
    ]
    return dict(images=images, annotations=anns, categories=cats)


def write(tmp_path, data, name="kp.json"):
    for img in data["images"]:
        if not (tmp_path / "img" / img["file_name"]).exists():
            write_image(tmp_path / "img" / img["file_name"], img["width"], img["height"])
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def dataset(tmp_path, data=None, **kwargs):
    ann_file = write(tmp_path, data or coco_keypoint_dict())
    kwargs.setdefault("test_mode", True)
    return CocoDataset(ann_file, [], img_prefix=str(tmp_path / "img"), **kwargs)


# ------------------------------------------------------------------------ the keypoint set
def test_coco_person_set_is_built_in():
    assert COCO_PERSON.num_keypoints == 17 and len(COCO_PERSON.sigmas) == 17
    assert len(COCO_PERSON.flip_pairs) == 8  # eyes, ears, shoulders, ..., ankles
    assert (1, 2) in COCO_PERSON.flip_pairs and (15, 16) in COCO_PERSON.flip_pairs
    perm = COCO_PERSON.flip_permutation("horizontal")
    assert perm[0] == 0 and perm[1] == 2 and perm[2] == 1
    assert (COCO_PERSON.flip_permutation("vertical") == np.arange(17)).all()  # no vertical map
    assert len(COCO_PERSON.skeleton) == 19 and (15, 13) in COCO_PERSON.skeleton


def test_vertical_and_diagonal_flips_use_their_own_maps():
    meta = KeypointMeta(["top", "bottom", "left", "right"], vertical_flip_pairs=[(0, 1)])
    assert meta.flip_pairs == ((2, 3),)
    assert meta.flip_permutation("horizontal").tolist() == [0, 1, 3, 2]
    assert meta.flip_permutation("vertical").tolist() == [1, 0, 2, 3]
    assert meta.flip_permutation("diagonal").tolist() == [1, 0, 3, 2]
    with pytest.raises(ValueError, match="sigmas must be 4 positive numbers"):
        KeypointMeta(meta.names, sigmas=[0.1, 0.1])
    with pytest.raises(ValueError, match="flip_pairs pair"):
        KeypointMeta(meta.names, flip_pairs=[(0, 7)])


def test_flip_mirrors_swaps_and_twice_is_the_identity():
    meta = KeypointMeta(NAMES)
    points = np.stack(
        [kp((20, 8, 2), (12, 30, 1), (36, 30, 2)), kp((5, 5, 2), (0, 0, 0), (15, 20, 2))]
    )
    flipped = flip_keypoints(points, (48, 64), "horizontal", meta)
    # x -> 64 - x, and left / right hands swapped; the unlabelled point stays (0, 0, 0)
    np.testing.assert_array_equal(flipped[0], kp((44, 8, 2), (28, 30, 2), (52, 30, 1)))
    np.testing.assert_array_equal(flipped[1], kp((59, 5, 2), (49, 20, 2), (0, 0, 0)))
    for direction in ("horizontal", "vertical", "diagonal"):
        twice = flip_keypoints(flip_keypoints(points, (48, 64), direction, meta), (48, 64),
                               direction, meta)  # fmt: skip
        np.testing.assert_array_equal(twice, points)


def test_points_leaving_the_image_become_unlabelled():
    points = kp((20, 8, 2), (12, 30, 1), (36, 30, 2))[None]
    resized = resize_keypoints(points, np.array([0.5, 0.5, 0.5, 0.5], np.float32), (24, 32))
    np.testing.assert_array_equal(resized[0], kp((10, 4, 2), (6, 15, 1), (18, 15, 2)))
    cropped = crop_keypoints(points, (15, 0, 40, 20), (20, 25))
    # (20, 8) -> (5, 8) stays; (12, 30) and (36, 30) fall outside the 25 x 20 window
    np.testing.assert_array_equal(cropped[0], kp((5, 8, 2), (0, 0, 0), (0, 0, 0)))


# ------------------------------------------------------------------------------ the dataset
def test_coco_dataset_reads_keypoints_and_their_set(tmp_path):
    ds = dataset(tmp_path, keypoint_meta=dict(sigmas=[0.1, 0.2, 0.2]))
    meta = ds.keypoint_meta
    assert meta.names == tuple(NAMES) and meta.skeleton == ((0, 1), (0, 2))
    assert meta.flip_pairs == ((1, 2),) and meta.sigmas == (0.1, 0.2, 0.2)
    ann = ds.get_ann_info(0)
    assert ann["keypoints"].shape == (2, 3, 3) and ann["keypoints"].dtype == np.float32
    np.testing.assert_array_equal(ann["keypoints"][0], kp((20, 8, 2), (12, 30, 1), (36, 30, 2)))
    np.testing.assert_array_equal(ann["keypoints"][1], np.zeros((3, 3)))  # the ball: none
    second = ds.get_ann_info(1)  # the crowd annotation is an ignore region: no keypoints
    assert second["keypoints"].shape == (1, 3, 3) and len(second["bboxes_ignore"]) == 1
    # a detection-only selection of the same file has no keypoint set
    ball = dataset(tmp_path, classes=["ball"])
    assert ball.keypoint_meta is None and "keypoints" not in ball.get_ann_info(0)


@pytest.mark.parametrize(
    "change, field, message",
    [
        (dict(keypoints=[20, 8, 2, 12, 30, 1]), "keypoints", "expected 9 numbers"),
        (dict(keypoints=[20, "8", 2, 12, 30, 1, 36, 30, 2]), "keypoints", "must be a number"),
        (dict(keypoints=[20, 8, 3, 12, 30, 1, 36, 30, 2]), "keypoints", "visibility 3"),
        (dict(keypoints=[20, 8, 0.5, 12, 30, 1, 36, 30, 2]), "keypoints", "visibility 0.5"),
        (dict(keypoints="20 8 2"), "keypoints", "must be a list"),
        (dict(keypoints=[20, float("nan"), 2, 12, 30, 1, 36, 30, 2]), "keypoints",
         "not finite"),
        (dict(num_keypoints=2), "num_keypoints", "3 of the keypoints are labelled"),
        (dict(num_keypoints="3"), "num_keypoints", "must be an integer"),
    ],
)  # fmt: skip
def test_bad_keypoints_name_the_file_the_annotation_and_the_field(tmp_path, change, field,
                                                                   message):  # fmt: skip
    data = coco_keypoint_dict()
    data["annotations"][0].update(change)
    with pytest.raises(DatasetError) as info:
        dataset(tmp_path, data)
    text = str(info.value)
    assert "kp.json" in text and "annotation id 11" in text and f"field '{field}'" in text
    assert message in text, text
    assert "Fix" in text


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["categories"][0].update(skeleton=[[1, 4]]), "not a pair of two different"),
        (lambda d: d["categories"][0].update(keypoints=["a", "a", "b"]), "repeat"),
        (lambda d: d["categories"][1].update(keypoints=["x"]), "list different keypoints"),
        (lambda d: d["annotations"][1].update(keypoints=[1, 2, 2]), "names none"),
    ],
)
def test_bad_keypoint_categories_are_named(tmp_path, change, message):
    data = coco_keypoint_dict()
    change(data)
    with pytest.raises(DatasetError, match=message) as info:
        dataset(tmp_path, data)
    assert "kp.json" in str(info.value)


def test_config_keypoint_meta_is_checked(tmp_path):
    with pytest.raises(DatasetError, match="differ from the file's"):
        dataset(tmp_path, keypoint_meta=dict(names=["a", "b", "c"]))
    with pytest.raises(DatasetError, match="unknown key"):
        dataset(tmp_path, keypoint_meta=dict(flip_map=[[1, 2]]))
    with pytest.raises(DatasetError, match="sigmas must be 3 positive numbers"):
        dataset(tmp_path, keypoint_meta=dict(sigmas=[0.1]))
    with pytest.raises(DatasetError, match="no selected category lists 'keypoints'"):
        dataset(tmp_path, classes=["ball"], keypoint_meta=dict(sigmas=[0.1, 0.1, 0.1]))


# ----------------------------------------------------------------------------- the pipeline
def _pipeline(*transforms):
    return Compose([
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True, with_keypoints=True),
        *transforms,
        dict(type="PackDetInputs", meta_keys=("img_shape", "flip", "flip_direction")),
    ])  # fmt: skip


def test_keypoints_flow_through_the_pipeline_into_the_sample(tmp_path):
    ann_file = write(tmp_path, coco_keypoint_dict())
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True, with_keypoints=True),
        dict(type="Resize", img_scale=(128, 96), keep_ratio=True),  # x2
        dict(type="RandomFlip", flip_ratio=1.0, direction="horizontal"),
        dict(type="Pad", size_divisor=32),
        dict(type="PackDetInputs", meta_keys=("img_shape", "flip", "flip_direction")),
    ]
    ds = CocoDataset(ann_file, pipeline, img_prefix=str(tmp_path / "img"))
    sample = ds[0]["data_samples"]
    gt = sample.gt_instances
    assert gt.keys() == ["bboxes", "labels", "keypoints"]
    assert gt.keypoints.shape == (2, 3, 3) and gt.keypoints.dtype == torch.float32
    # scaled x2 into 128 x 96, mirrored (x -> 128 - x) and the hands swapped
    expected = kp((128 - 40, 16, 2), (128 - 72, 60, 2), (128 - 24, 60, 1))
    torch.testing.assert_close(gt.keypoints[0], torch.from_numpy(expected))
    assert gt.keypoints[1].abs().sum() == 0


def test_a_crop_that_drops_a_box_drops_its_keypoints(tmp_path):
    from mmdet_like.datasets.pipelines.transforms import _crop_instances

    ds = dataset(tmp_path)
    results = dict(img_info=ds.get_img_info(0), ann_info=ds.get_ann_info(0))
    ds.pre_pipeline(results)
    results = _pipeline().transforms[0](results)
    results = _pipeline().transforms[1](results)
    random.seed(0)
    _crop_instances(results, 0, 0, 42, 40)  # keeps the person, cuts the ball away
    assert results["gt_bboxes"].shape == (1, 4) and results["gt_keypoints"].shape == (1, 3, 3)
    np.testing.assert_array_equal(
        results["gt_keypoints"][0], kp((20, 8, 2), (12, 30, 1), (36, 30, 2))
    )
    assert results["gt_labels"].tolist() == [0]


def test_with_keypoints_on_a_dataset_without_them_says_so(tmp_path):
    ds = dataset(tmp_path, classes=["ball"])
    results = dict(img_info=ds.get_img_info(0), ann_info=ds.get_ann_info(0))
    ds.pre_pipeline(results)
    with pytest.raises(DatasetError, match="with_keypoints=True but the dataset has no"):
        _pipeline().transforms[1](results)


def test_flip_without_the_dataset_keypoint_set_says_what_to_do():
    from mmdet_like.datasets.pipelines.field_kinds import KeypointField

    with pytest.raises(KeyError, match="keypoint_meta"):
        KeypointField().flip(np.zeros((1, 3, 3), np.float32), (10, 10), "horizontal", {})


def test_start_up_check_compares_the_keypoint_counts(tmp_path):
    from mmdet_like.apis.startup_check import StartupCheckError, check_class_counts

    model = dict(
        type="KeypointRCNN",
        roi_head=dict(bbox_head=dict(num_classes=2),
                      keypoint_head=dict(type="KeypointRCNNHead", num_keypoints=5)),
    )  # fmt: skip
    ds = dataset(tmp_path)  # 3 keypoints, classes person and ball
    with pytest.raises(StartupCheckError, match=r"num_keypoints is 5, but data.train .* has 3"):
        check_class_counts(model, ds, "train")
    model["roi_head"]["keypoint_head"]["num_keypoints"] = 3
    check_class_counts(model, ds, "train")
    with pytest.raises(StartupCheckError, match="has none"):
        check_class_counts(model, dataset(tmp_path, classes=["ball", "person"][:1]), "train")
