"""Detectors: image batching, the forward contract (train/test), empty images, RPN output,
and a tiny Mask R-CNN that learns a synthetic dataset."""

import time

import numpy as np
import pytest
import torch

from mmdet_like.models import build_detector
from mmdet_like.models.detectors import pad_images
from mmdet_like.structures import BitmapMasks

C = 8
STRIDES = [4, 8, 16, 32]


def tiny_model_cfg(kind="MaskRCNN", num_classes=3):
    """(model, train_cfg, test_cfg) of a ResNet-18 FPN detector of width ``C`` on a quarter-
    width ResNet-18 (base channels 16: stages of 16-128 channels)."""
    extractor = dict(
        type="SingleRoIExtractor",
        roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0, aligned=True),
        out_channels=C,
        featmap_strides=STRIDES,
    )
    model = dict(
        type=kind,
        backbone=dict(
            type="ResNet", depth=18, base_channels=16, norm_cfg=dict(type="BN", requires_grad=False)
        ),
        neck=dict(type="FPN", in_channels=[16, 32, 64, 128], out_channels=C, num_outs=5),
        rpn_head=dict(
            type="RPNHead",
            in_channels=C,
            feat_channels=C,
            anchor_generator=dict(
                type="AnchorGenerator", scales=[4], ratios=[0.5, 1.0, 2.0], strides=STRIDES + [64]
            ),
            loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0),
        ),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=extractor,
            bbox_head=dict(
                type="Shared2FCBBoxHead",
                in_channels=C,
                fc_out_channels=32,
                roi_feat_size=7,
                num_classes=num_classes,
            ),
        ),
    )
    if kind == "MaskRCNN":
        model["roi_head"].update(
            mask_roi_extractor=dict(extractor, roi_layer=dict(type="RoIAlign", output_size=14)),
            mask_head=dict(
                type="FCNMaskHead", in_channels=C, conv_out_channels=C, num_classes=num_classes
            ),
        )
    if kind == "RPN":
        model.pop("roi_head")
    train_cfg = dict(
        rpn=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
            sampler=dict(type="RandomSampler", num=64, pos_fraction=0.5, add_gt_as_proposals=False),
            allowed_border=0,
        ),
        rpn_proposal=dict(nms_pre=300, nms_post=300, max_num=300, nms_thr=0.7, min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5),
            sampler=dict(type="RandomSampler", num=64, pos_fraction=0.25),
            mask_size=28,
        ),
    )
    test_cfg = dict(
        rpn=dict(nms_pre=300, nms_post=300, max_num=300, nms_thr=0.7, min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(iou_thr=0.5), max_per_img=20, mask_thr_binary=0.5),
    )
    if kind == "RPN":  # a stand-alone RPN reads no second-stage settings
        train_cfg = dict(rpn=train_cfg["rpn"])
        test_cfg = dict(rpn=test_cfg["rpn"])
    return model, train_cfg, test_cfg


def tiny_model(kind="MaskRCNN", num_classes=3):
    torch.manual_seed(0)
    detector = build_detector(*tiny_model_cfg(kind, num_classes))
    detector.init_weights()
    return detector


def meta(h, w, scale=1.0):
    return dict(
        ori_shape=(round(h / scale), round(w / scale), 3),
        img_shape=(h, w, 3),
        pad_shape=(h, w, 3),
        scale_factor=np.full(4, scale, dtype=np.float32),
        flip=False,
    )


def test_pad_images():
    images = [torch.ones(3, 40, 70), 2 * torch.ones(3, 65, 30)]
    batch = pad_images(images, 32)
    assert batch.shape == (2, 3, 96, 96)
    assert batch[0, :, :40, :70].eq(1).all() and batch[0, :, 40:].eq(0).all()
    assert batch[1, :, :65, :30].eq(2).all() and batch[1, :, :, 30:].eq(0).all()
    stacked = torch.randn(2, 3, 64, 96)
    assert pad_images(stacked, 32) is stacked
    assert pad_images(torch.randn(2, 3, 50, 64), 32).shape == (2, 3, 64, 64)


def test_pad_images_padding_mask():
    """``return_mask``: (N, H', W') bool, True on padding (a DETR-style key padding mask)."""
    images = [torch.ones(3, 40, 70), 2 * torch.ones(3, 65, 30)]
    batch, mask = pad_images(images, 32, return_mask=True)
    assert torch.equal(batch, pad_images(images, 32))
    assert mask.shape == (2, 96, 96) and mask.dtype == torch.bool
    assert torch.equal(mask, batch[:, 0] == 0)  # the images are non-zero everywhere
    stacked = torch.randn(2, 3, 64, 96)
    same, mask = pad_images(stacked, 32, return_mask=True)
    assert same is stacked and not mask.any()
    # images padded before (a Pad step, the collate): valid_shapes says where each ends
    batch, mask = pad_images(torch.randn(2, 3, 50, 64), 32, return_mask=True,
                             valid_shapes=[(50, 64, 3), (30, 20, 3)])  # fmt: skip
    assert batch.shape == (2, 3, 64, 64) and mask.shape == (2, 64, 64)
    assert not mask[0, :50].any() and mask[0, 50:].all()
    assert not mask[1, :30, :20].any() and int(mask[1].sum()) == 64 * 64 - 30 * 20
    with pytest.raises(ValueError, match="1 valid_shapes for 2 images"):
        pad_images(stacked, 32, return_mask=True, valid_shapes=[(64, 96)])


def test_mask_rcnn_forward_contract_with_an_empty_image():
    model = tiny_model()
    images = [torch.randn(3, 64, 96), torch.randn(3, 80, 64)]
    metas = [meta(64, 96), meta(80, 64, scale=2.0)]
    masks = np.zeros((2, 64, 96), np.uint8)
    masks[0, 10:40, 10:50] = 1
    masks[1, 5:60, 60:90] = 1
    losses = model(
        img=images,
        img_metas=metas,
        gt_bboxes=[torch.tensor([[10.0, 10, 50, 40], [60, 5, 90, 60]]), torch.zeros((0, 4))],
        gt_labels=[torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)],
        gt_masks=[BitmapMasks(masks, 64, 96), BitmapMasks([], 80, 64)],
    )
    expected = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc", "loss_mask"}
    assert set(losses) == expected
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert model.roi_head.mask_head.conv_logits.weight.grad.abs().sum() > 0

    model.eval()
    outputs = model(img=images, img_metas=metas, return_loss=False, rescale=True)
    assert isinstance(outputs, list) and len(outputs) == 2
    for output, m in zip(outputs, metas):
        bboxes, segms = output
        assert len(bboxes) == len(segms) == 3
        for dets, class_masks in zip(bboxes, segms):
            assert dets.dtype == np.float32 and dets.shape[1] == 5 and len(class_masks) == len(dets)
            for mask in class_masks:
                assert mask.dtype == bool and mask.shape == m["ori_shape"][:2]
    assert sum(len(d) for d in outputs[0][0]) > 0


def test_training_on_images_without_any_box():
    model = tiny_model()
    losses = model(
        img=torch.randn(2, 3, 64, 64),
        img_metas=[meta(64, 64), meta(64, 64)],
        gt_bboxes=[torch.zeros((0, 4))] * 2,
        gt_labels=[torch.zeros(0, dtype=torch.long)] * 2,
        gt_masks=[BitmapMasks([], 64, 64)] * 2,
    )
    assert losses["loss_bbox"].item() == 0 and losses["loss_mask"].item() == 0
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()


def test_rpn_detector_returns_rescaled_proposals():
    model = tiny_model("RPN")
    losses = model(
        img=torch.randn(1, 3, 64, 64),
        img_metas=[meta(64, 64)],
        gt_bboxes=[torch.tensor([[8.0, 8, 40, 40]])],
        gt_labels=[torch.tensor([1])],
    )
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
    model.eval()
    img = torch.randn(3, 64, 64)
    # MultiScaleFlipAug layout: per image, a list of one augmentation
    out = model(img=[[img]], img_metas=[[meta(64, 64, scale=2.0)]], return_loss=False, rescale=True)
    raw = model(img=[img], img_metas=[meta(64, 64)], return_loss=False, rescale=False)
    assert len(out) == 1 and out[0].dtype == np.float32 and out[0].shape[1] == 5
    np.testing.assert_allclose(out[0][:, :4] * 2, raw[0][:, :4], rtol=1e-5)
    assert out[0][:, :4].max() <= 32 and (np.diff(out[0][:, 4]) <= 0).all()
    # several augmentations per image: merged by aug_test (tests/models/test_aug_test.py)
    assert len(
        model(img=[[img, img]], img_metas=[[meta(64, 64)] * 2], return_loss=False, rescale=True)[0]
    )


def test_fast_rcnn_needs_and_uses_proposals():
    model = tiny_model("FasterRCNN")
    cfg_model = dict(
        type="FastRCNN",
        backbone=dict(type="ResNet", depth=18),
        neck=dict(type="FPN", in_channels=[64, 128, 256, 512], out_channels=C, num_outs=5),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(
                type="SingleRoIExtractor",
                roi_layer=dict(type="RoIAlign", output_size=7),
                out_channels=C,
                featmap_strides=STRIDES,
            ),
            bbox_head=dict(
                type="Shared2FCBBoxHead", in_channels=C, fc_out_channels=16, num_classes=3
            ),
        ),
    )
    fast = build_detector(
        cfg_model, dict(rcnn=model.train_cfg["rcnn"]), dict(rcnn=model.test_cfg["rcnn"])
    )
    data = dict(
        img=torch.randn(1, 3, 64, 64),
        img_metas=[meta(64, 64)],
        gt_bboxes=[torch.tensor([[8.0, 8, 40, 40]])],
        gt_labels=[torch.tensor([1])],
    )
    with pytest.raises(ValueError, match="proposals"):
        fast(**data)
    losses = fast(**data, proposals=[torch.tensor([[10.0, 6, 42, 38], [0, 30, 20, 60]])])
    assert {"loss_cls", "loss_bbox"} <= set(losses)
    fast.eval()
    out = fast(
        img=data["img"],
        img_metas=data["img_metas"],
        proposals=[torch.tensor([[10.0, 6, 42, 38], [0, 30, 20, 60]])],
        return_loss=False,
    )
    assert len(out) == 1 and len(out[0]) == 3 and sum(len(d) for d in out[0]) <= 6


def synthetic_dataset(num_images=4, size=64, seed=0):
    """Images with 1-2 solid rectangles; the class is the colour (red, green, blue)."""
    rng = np.random.default_rng(seed)
    colours = np.eye(3, dtype=np.float32) * 2.0 - 1.0  # normalised channel values
    images, boxes, labels, masks = [], [], [], []
    for _ in range(num_images):
        img = np.full((3, size, size), -1.0, np.float32)
        n = int(rng.integers(1, 3))
        img_boxes, img_labels, img_masks = [], [], []
        for k in range(n):
            w, h = rng.integers(16, 32, size=2)
            x0 = int(rng.integers(0, size - w)) if k == 0 else int(size - w - 1)
            y0 = int(rng.integers(0, size - h))
            label = int(rng.integers(0, 3))
            img[:, y0 : y0 + h, x0 : x0 + w] = colours[label][:, None, None]
            mask = np.zeros((size, size), np.uint8)
            mask[y0 : y0 + h, x0 : x0 + w] = 1
            img_boxes.append([x0, y0, x0 + w, y0 + h])
            img_labels.append(label)
            img_masks.append(mask)
        images.append(torch.from_numpy(img))
        boxes.append(torch.tensor(img_boxes, dtype=torch.float32))
        labels.append(torch.tensor(img_labels))
        masks.append(BitmapMasks(img_masks, size, size))
    return torch.stack(images), boxes, labels, masks


def train_on_synthetic_dataset(model, iterations):
    """``iterations`` SGD steps (LR 0.02, momentum 0.9, gradients clipped at 10) of ``model``
    on :func:`synthetic_dataset`'s 4 images: each step's losses as floats."""
    images, boxes, labels, masks = synthetic_dataset()
    metas = [meta(64, 64) for _ in range(len(images))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    history = []
    for _ in range(iterations):
        losses = model(
            img=images, img_metas=metas, gt_bboxes=boxes, gt_labels=labels, gt_masks=masks
        )
        total = sum(v for k, v in losses.items() if "loss" in k)
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return history


def test_mask_rcnn_learns_a_tiny_synthetic_dataset():
    torch.manual_seed(0)
    model = tiny_model()
    start = time.perf_counter()
    history = train_on_synthetic_dataset(model, 150)
    elapsed = time.perf_counter() - start
    first = np.mean([sum(v for k, v in h.items() if "loss" in k) for h in history[:10]])
    last = np.mean([sum(v for k, v in h.items() if "loss" in k) for h in history[-10:]])
    print(f"total loss {first:.3f} -> {last:.3f} in {elapsed:.1f}s")
    assert last < 0.5 * first
    for key in ("loss_rpn_cls", "loss_cls", "loss_mask"):
        assert np.mean([h[key] for h in history[-10:]]) < np.mean([h[key] for h in history[:10]])
