"""Test-time augmentation (several scales and flips per image): box mapping between the
original image and an augmented input, and the merge in the RPN and two-stage detectors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdet_like.structures import DetDataSample, bbox_mapping, bbox_mapping_back, flip_bboxes
from tests.models.test_detectors import meta, tiny_model


def aug_meta(h, w, scale=1.0, flip=False, direction="horizontal"):
    """Meta of an input of (h, w) made from the original by resizing with ``scale``."""
    return dict(meta(h, w, scale), flip=flip, flip_direction=direction if flip else None)


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_box_mapping_round_trip(direction):
    torch.manual_seed(0)
    xy = torch.rand(20, 2) * 50
    boxes = torch.cat([xy, xy + torch.rand(20, 2) * 30 + 1], 1).repeat(1, 3)  # (20, 4 * 3)
    info = aug_meta(120, 150, scale=1.5, flip=True, direction=direction)
    mapped = bbox_mapping(boxes, info)
    torch.testing.assert_close(bbox_mapping_back(mapped, info), boxes)
    # a horizontal flip mirrors x in the resized image
    if direction == "horizontal":
        torch.testing.assert_close(mapped[:, 0], 150 - boxes[:, 2] * 1.5)
    # flipping twice is the identity, for tensors and arrays alike
    b = boxes[:, :4]
    torch.testing.assert_close(
        flip_bboxes(flip_bboxes(b, (120, 150), direction), (120, 150), direction), b
    )
    np.testing.assert_allclose(
        flip_bboxes(b.numpy(), (120, 150), direction), flip_bboxes(b, (120, 150), direction).numpy()
    )


def samples(*metas):
    return [DetDataSample(m) for m in metas]


def _image(seed=0, size=64):
    torch.manual_seed(seed)
    return torch.randn(3, size, size)


def test_two_identical_augmentations_give_the_plain_result():
    model = tiny_model("MaskRCNN").eval()
    img, info = _image(), meta(64, 64)
    plain = model.predict_instances(img[None], samples(info), rescale=True)[0]
    merged = model.aug_predict_instances([[img, img]], [samples(info, info)])[0]
    assert len(plain) > 0
    torch.testing.assert_close(merged.bboxes, plain.bboxes)
    torch.testing.assert_close(merged.scores, plain.scores)
    assert torch.equal(merged.labels, plain.labels)
    assert torch.equal(merged.masks, plain.masks)
    # the forward contract routes per-image lists of several augmentations to aug_test
    out = model(img=[[img, img]], img_metas=[[info, info]], return_loss=False, rescale=True)
    per_class = model(img=[img], img_metas=[info], return_loss=False, rescale=True)
    for a, b in zip(out[0][0], per_class[0][0]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="rescale=True"):
        model(img=[[img, img]], img_metas=[[info, info]], return_loss=False, rescale=False)
    # ... and so does it for the samples of MultiScaleFlipAug + PackDetInputs
    (sample,) = model(img=[[img, img]], data_samples=[samples(info, info)], return_loss=False,
                      rescale=True)  # fmt: skip
    torch.testing.assert_close(sample.pred_instances.bboxes, plain.bboxes)
    assert torch.equal(sample.pred_instances.masks, plain.masks)


@pytest.mark.parametrize("direction", ["horizontal", "vertical"])
def test_a_flipped_input_is_mapped_back(direction):
    model = tiny_model("MaskRCNN").eval()
    img = _image(1)
    dims = [-1] if direction == "horizontal" else [-2]
    flipped = img.flip(dims)
    # the plain result on the flipped picture, flipped back by hand ...
    on_flipped = model.predict_instances(flipped[None], samples(meta(64, 64)), rescale=True)[0]
    expected_boxes = flip_bboxes(on_flipped.bboxes, (64, 64), direction)
    expected_masks = on_flipped.masks.flip(dims)
    # ... equals test-time augmentation told that its one input is flipped
    merged = model.aug_predict_instances(
        [[flipped]], [samples(aug_meta(64, 64, flip=True, direction=direction))]
    )[0]
    assert len(merged) == len(on_flipped) > 0
    torch.testing.assert_close(merged.bboxes, expected_boxes, atol=1e-4, rtol=0)
    torch.testing.assert_close(merged.scores, on_flipped.scores)
    differing = (merged.masks != expected_masks).sum().item()
    assert differing <= 0.01 * max(expected_masks.sum().item(), 1)


def test_scales_and_flips_merge_into_the_original_image():
    model = tiny_model("MaskRCNN").eval()
    img = _image(2, size=64)  # the original image: 64 x 64
    inputs, metas = [], []
    for scale in (1.0, 1.5):
        size = int(64 * scale)
        resized = F.interpolate(img[None], size=(size, size), mode="bilinear")[0]
        for flip in (False, True):
            inputs.append(resized.flip(-1) if flip else resized)
            metas.append(dict(aug_meta(size, size, scale, flip), ori_shape=(64, 64, 3)))
    result = model.aug_predict_instances([inputs], [samples(*metas)])[0]
    assert 0 < len(result) <= model.roi_head.test_cfg["max_per_img"]
    assert result.masks.shape == (len(result), 64, 64)
    assert (result.bboxes >= -1e-4).all() and (result.bboxes <= 64 + 1e-4).all()
    assert (result.scores[:-1] >= result.scores[1:]).all()
    # Faster R-CNN (no masks) takes the same path
    boxes_only = (
        tiny_model("FasterRCNN").eval().aug_predict_instances([inputs], [samples(*metas)])[0]
    )
    assert "masks" not in boxes_only and len(boxes_only) > 0


def test_rpn_merges_augmented_proposals():
    model = tiny_model("RPN").eval()
    img = _image(3)
    flipped = img.flip(-1)
    cfg = model.rpn_head.test_cfg
    plain = model(img=[flipped], img_metas=[meta(64, 64)], return_loss=False, rescale=True)[0]
    one = model(
        img=[[flipped]], img_metas=[[aug_meta(64, 64, flip=True)]], return_loss=False, rescale=True
    )[0]
    # one flipped input: its proposals mirrored (the merge NMS may drop some that overlap
    # across pyramid levels, as the RPN's per-level NMS keeps them)
    mirrored = flip_bboxes(torch.from_numpy(plain[:, :4]), (64, 64), "horizontal").numpy()
    assert len(one) <= len(plain)
    matched = (np.abs(one[:, None, :4] - mirrored[None]).max(-1) < 1e-4).any(1)
    assert matched.all()
    two = model(
        img=[[img, flipped]],
        img_metas=[[meta(64, 64), aug_meta(64, 64, flip=True)]],
        return_loss=False,
        rescale=True,
    )[0]
    assert 0 < len(two) <= cfg["max_num"] and two.dtype == np.float32
    assert (np.diff(two[:, 4]) <= 0).all()


def test_fast_rcnn_refuses_test_time_augmentation():
    model = tiny_model("FasterRCNN").eval()
    model.rpn_head = None  # what FastRCNN is: proposals come with the data
    img = _image()
    with pytest.raises(ValueError, match="needs an RPN"):
        model(img=[[img, img]], img_metas=[[meta(64, 64)] * 2], return_loss=False, rescale=True)
