"""Python inference API: init_detector, inference_detector, show_result on a tiny Mask R-CNN
(the COCO config shrunk to a ResNet-18, 16-channel FPN and 3 classes, 128x96 test scale)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mmdet_like.apis import (
    inference_detector,
    inference_detector_samples,
    init_detector,
    show_result,
)
from mmdet_like.engine import load_config, save_checkpoint
from mmdet_like.models import build_detector
from mmdet_like.structures import detection_to_per_class

ROOT = Path(__file__).resolve().parents[2]
WIDTH, NUM_CLASSES = 16, 3
NAMES = ["cat", "dog", "bird"]


def tiny_cfg(name="mask_rcnn_r50_fpn_1x.py", **data_test):
    cfg = load_config(str(ROOT / "configs" / name))
    model = cfg.model
    model.pretrained = "torchvision://resnet50"  # must never be loaded by init_detector
    model.backbone = dict(type="ResNet", depth=18, norm_cfg=dict(type="BN"), norm_eval=True)
    model.neck.update(in_channels=[64, 128, 256, 512], out_channels=WIDTH)
    model.rpn_head.update(in_channels=WIDTH, feat_channels=WIDTH)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = WIDTH
    roi.bbox_head.update(in_channels=WIDTH, fc_out_channels=32, num_classes=NUM_CLASSES)
    if roi.get("mask_head"):
        roi.mask_head.update(in_channels=WIDTH, conv_out_channels=WIDTH, num_classes=NUM_CLASSES)
        roi.mask_roi_extractor.out_channels = WIDTH
    cfg.test_cfg.rcnn.score_thr = 0.0  # random weights: keep every detection
    pipeline = cfg.data.test.pipeline
    pipeline[1]["img_scale"] = (128, 96)
    cfg.data.test.pipeline = pipeline
    cfg.data.test.update(data_test)
    return cfg


def image(seed=0, shape=(60, 90)):
    """A BGR uint8 picture: a smooth background with a few filled shapes."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], -1)
    img = img.astype(np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x, y), (x + 18, y + 15), color, -1)
    return img


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of a randomly initialised tiny Mask R-CNN written by save_checkpoint."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_detector(cfg.model, test_cfg=cfg.test_cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(str(path), model, meta=dict(CLASSES=NAMES))
    return path, model.state_dict()


def test_init_detector_loads_weights_and_classes(checkpoint):
    path, saved = checkpoint
    model = init_detector(tiny_cfg(), str(path))
    assert not model.training
    assert model.CLASSES == tuple(NAMES)
    assert model.backbone.pretrained is None
    state = model.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_init_detector_from_path_with_cfg_options(tmp_path):
    cfg = tiny_cfg()
    path = tmp_path / "tiny_cfg.py"
    cfg.dump(str(path))
    model = init_detector(str(path), cfg_options={"test_cfg.rcnn.max_per_img": 7})
    assert model.roi_head.test_cfg["max_per_img"] == 7
    assert model.backbone.pretrained is None


def test_class_names_fall_back_to_dataset_then_numbers():
    assert init_detector(tiny_cfg(classes=NAMES)).CLASSES == tuple(NAMES)
    voc = tiny_cfg(type="VOCDataset")
    voc.model.roi_head.bbox_head.num_classes = 20
    voc.model.roi_head.mask_head.num_classes = 20
    names = init_detector(voc).CLASSES
    assert len(names) == 20 and names[0] == "aeroplane"
    # CocoDataset reads its names from the annotation file: numbered
    assert init_detector(tiny_cfg()).CLASSES == ("0", "1", "2")


def check_mask_result(result, shape):
    bbox_results, segm_results = result
    assert len(bbox_results) == len(segm_results) == NUM_CLASSES
    total = 0
    for dets, masks in zip(bbox_results, segm_results):
        assert dets.dtype == np.float32 and dets.shape[1] == 5
        assert len(masks) == len(dets)
        for mask in masks:
            assert mask.dtype == bool and mask.shape == shape
        # boxes in the original image's coordinates
        assert (dets[:, [0, 2]] <= shape[1] + 1e-3).all()
        assert (dets[:, [1, 3]] <= shape[0] + 1e-3).all()
        total += len(dets)
    assert total > 0
    return total


def test_inference_detector_path_array_and_list(checkpoint, tmp_path):
    path, _ = checkpoint
    model = init_detector(tiny_cfg(), str(path))
    img = image()
    file = tmp_path / "img.png"
    cv2.imwrite(str(file), img)

    from_array = inference_detector(model, img)
    from_path = inference_detector(model, str(file))
    assert isinstance(from_array, tuple)
    check_mask_result(from_array, img.shape[:2])
    for a, b in zip(from_array[0], from_path[0]):
        np.testing.assert_array_equal(a, b)

    other = image(seed=1, shape=(80, 50))
    both = inference_detector(model, [img, other])
    assert isinstance(both, list) and len(both) == 2
    check_mask_result(both[1], other.shape[:2])
    for a, b in zip(both[0][0], from_array[0]):
        np.testing.assert_array_equal(a, b)

    # same as running the model by hand on the pipeline's tensors
    from mmdet_like.apis.inference import _prepare

    data = _prepare(img, model.cfg)
    with torch.no_grad():
        (direct,) = model(
            img=[data["img"]], data_samples=[data["data_samples"]], return_loss=False,
            rescale=True,
        )  # fmt: skip
    for a, b in zip(detection_to_per_class(direct, NUM_CLASSES)[0], from_array[0]):
        np.testing.assert_array_equal(a, b)
    meta = data["data_samples"][0].metainfo
    assert meta["ori_shape"] == img.shape and meta["img_shape"][:2] == (85, 128)
    # the samples themselves: masks of the original image, the per-class lists made from them
    (sample,) = inference_detector_samples(model, [img])
    pred = sample.pred_instances
    assert pred.masks.shape[1:] == img.shape[:2] and len(pred) == sum(map(len, from_array[0]))


@pytest.mark.parametrize("flip", [False, True])
def test_a_collect_test_pipeline_gives_the_same_results(checkpoint, flip):
    """A users' config whose test pipeline still ends in ImageToTensor + Collect (mmdetection
    v2) infers through the same detector path, with and without augmentations."""
    path, _ = checkpoint
    results = []
    for legacy in (False, True):
        cfg = tiny_cfg()
        aug = cfg.data.test.pipeline[1]
        aug.update(img_scale=[(128, 96), (160, 120)] if flip else (128, 96), flip=flip)
        if legacy:
            assert aug["transforms"][-1]["type"] == "PackDetInputs"
            aug["transforms"][-1:] = [dict(type="ImageToTensor", keys=["img"]),
                                      dict(type="Collect", keys=["img"])]  # fmt: skip
        results.append(inference_detector(init_detector(cfg, str(path)), image()))
    (boxes, masks), (legacy_boxes, legacy_masks) = results
    assert sum(map(len, boxes)) > 0
    for a, b in zip(boxes, legacy_boxes):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(masks, legacy_masks):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_inference_detector_faster_rcnn_returns_bbox_lists():
    cfg = tiny_cfg("faster_rcnn_r50_fpn_1x.py")
    torch.manual_seed(0)
    model = init_detector(cfg)
    result = inference_detector(model, image())
    assert isinstance(result, list) and len(result) == NUM_CLASSES
    assert all(r.dtype == np.float32 and r.shape[1] == 5 for r in result)


def test_show_result_draws_and_writes(checkpoint, tmp_path):
    path, _ = checkpoint
    model = init_detector(tiny_cfg(), str(path))
    img = image()
    result = inference_detector(model, img)
    out_file = tmp_path / "out" / "drawn.png"
    drawn = show_result(img, result, model.CLASSES, score_thr=0.0, out_file=str(out_file))
    assert drawn.shape == img.shape and drawn.dtype == np.uint8
    assert (drawn != img).any()
    np.testing.assert_array_equal(cv2.imread(str(out_file)), drawn)
    untouched = show_result(img, result, model.CLASSES, score_thr=1.1)
    np.testing.assert_array_equal(untouched, img)
    from_file = tmp_path / "img.png"
    cv2.imwrite(str(from_file), img)
    np.testing.assert_array_equal(
        show_result(str(from_file), result, model.CLASSES, score_thr=0.0), drawn
    )


def test_inference_with_multi_scale_and_flip_augmentation(checkpoint):
    path, _ = checkpoint
    cfg = tiny_cfg()
    cfg.data.test.pipeline[1].update(img_scale=[(128, 96), (160, 120)], flip=True)
    model = init_detector(cfg, str(path))
    img = image()
    result = inference_detector(model, img)  # 4 augmentations merged by the detector
    total = check_mask_result(result, img.shape[:2])
    assert total <= model.cfg.test_cfg.rcnn.max_per_img
    # the pipeline hands the detector one list of 4 augmentations (2 scales x 2 flips)
    from mmdet_like.apis.inference import _prepare

    data = _prepare(img, model.cfg)
    metas = [s.metainfo for s in data["data_samples"]]
    assert [(m["img_shape"][:2], m["flip"]) for m in metas] == [
        ((85, 128), False), ((85, 128), True), ((107, 160), False), ((107, 160), True)
    ]  # fmt: skip


DETR_FAMILY = [
    ("detr", "detr_r50_8x2_150e_coco.py"),
    ("deformable_detr", "deformable_detr_twostage_refine_r50_16x2_50e_coco.py"),
    ("dino", "dino-4scale_r50_8xb2-12e_coco.py"),
]


@pytest.mark.parametrize("folder,name", DETR_FAMILY, ids=[f for f, _ in DETR_FAMILY])
def test_detr_family_through_init_inference_and_show(folder, name, tmp_path):
    """A set-prediction detector (its configs shrunk as its model tests shrink them) saved by
    save_checkpoint, loaded by init_detector, run by inference_detector on an array (per-class
    lists of at most max_per_img boxes inside the image, the same as the model's own
    detections of the samples API) and drawn by show_result."""
    from tests.models.test_deformable_detr import _shrunk as deformable_shrunk
    from tests.models.test_detr import _shrunk as detr_shrunk
    from tests.models.test_dino import _dino_shrunk

    shrink = {"detr": detr_shrunk, "deformable_detr": deformable_shrunk, "dino": _dino_shrunk}
    cfg = load_config(str(ROOT / "configs" / folder / name))
    model_cfg = shrink[folder](cfg.model.to_dict())
    model_cfg["bbox_head"]["num_classes"] = NUM_CLASSES
    cfg.model = model_cfg
    cfg.data.test.pipeline[1]["img_scale"] = (128, 96)
    torch.manual_seed(0)
    model = build_detector(cfg.model, None, cfg.test_cfg)
    model.init_weights()
    path = tmp_path / f"{folder}.pth"
    save_checkpoint(str(path), model, meta=dict(CLASSES=NAMES))

    loaded = init_detector(cfg, str(path))
    assert list(loaded.CLASSES) == NAMES
    img = image(shape=(72, 100))
    result = inference_detector(loaded, img)
    assert isinstance(result, list) and len(result) == NUM_CLASSES
    boxes = np.concatenate(result)
    assert 0 < len(boxes) <= cfg.test_cfg.get("max_per_img", 100)
    assert (boxes[:, [0, 2]] >= -1e-3).all() and (boxes[:, [0, 2]] <= 100 + 1e-3).all()
    assert (boxes[:, [1, 3]] >= -1e-3).all() and (boxes[:, [1, 3]] <= 72 + 1e-3).all()
    sample = inference_detector_samples(loaded, [img])[0]
    expected = detection_to_per_class(sample.pred_instances, NUM_CLASSES)
    for ours, theirs in zip(result, expected):
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    drawn = show_result(img, result, loaded.CLASSES, score_thr=0.0)
    assert drawn.shape == img.shape and (drawn != img).any()
