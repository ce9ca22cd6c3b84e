"""Proof that our training step equals torchvision's Mask / Faster R-CNN, step for step.

torchvision's ``maskrcnn_resnet50_fpn`` / ``fasterrcnn_resnet50_fpn`` (random weights, fixed
seed, frozen batch norms with random statistics and the stem and first stage frozen, as its
pretrained models train) is converted by tools/convert_torchvision_detection.py into our
model built from configs/torchvision/; both get the same batch of two photographs
(scikit-image's ``astronaut`` and ``coffee``, 320 x 448) with the same boxes, labels and
masks. The samplers' randomness is removed on both sides: each takes every positive and
every negative (a sampler size larger than the anchors or proposals, positive fraction 1).

Then every loss term must equal torchvision's within 1e-4 (relative), every parameter's
gradient within 1e-4 of that gradient's largest value (with our sampled-anchor RPN
training on and off), and one SGD and one AdamW step (our optimizer builder against
``torch.optim`` on torchvision's parameters) must leave the same weights within 1e-5.

Where torchvision differs from mmdetection by design, configs/torchvision/ carries the
switch (see the comment there); the settings the test relies on are checked by name in
``test_torchvision_config_has_torchvision_training_settings``:

- ``train_cfg.rpn.allowed_border=-1``: every anchor is assigned (mmdetection: 0);
- ``train_cfg.rpn.assigner.min_pos_iou=0``: a gt claims its best anchors however low their
  IoU (mmdetection: 0.3);
- ``train_cfg.rpn_proposal``: 2000 proposals per level before NMS, 2000 per image after,
  boxes under 1e-3 dropped (mmdetection: 2000 per level after NMS, none dropped);
- ``train_cfg.rcnn.assigner.match_low_quality=False``;
- ``roi_head.bbox_head.loss_bbox``: smooth L1 with ``beta=1/9`` (mmdetection: ``beta=1``);
- ``train_cfg.rcnn.mask_target_aligned=False``, ``mask_target_binarize=False``: soft targets
  from an unaligned RoIAlign (mmdetection: aligned, thresholded at 0.5).

Loss normalisation is the same on both sides (RPN and RoI losses averaged over the sampled
anchors / RoIs of the batch, the mask loss over the positives' pixels), so it has no switch.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdet_like.apis import build_detector
from mmdet_like.engine import build_optimizer, load_config
from mmdet_like.models.utils.torchvision_detection import convert_torchvision_detection
from mmdet_like.structures import BitmapMasks, DetDataSample, InstanceData
from tests.models.torchvision_helpers import freeze_batch_norms

skdata = pytest.importorskip("skimage.data")
detection = pytest.importorskip("torchvision.models.detection")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "torchvision"
HEIGHT, WIDTH = 320, 448  # multiples of 64: torchvision's P6 stride is then 64, as ours
NUM_CLASSES = 4  # object classes; torchvision's model has one more (background 0)
TAKE_ALL = 10**7  # a sampler size above every anchor and proposal count

# hand-placed objects of the two photographs, in the 320 x 448 inputs: (class, box)
OBJECTS = (
    (
        (0, (150.0, 10.0, 270.0, 150.0)),
        (1, (20.0, 150.0, 190.0, 320.0)),
        (2, (300.0, 40.0, 400.0, 300.0)),
    ),
    ((3, (60.0, 20.0, 360.0, 300.0)), (1, (250.0, 100.0, 330.0, 180.0))),
)
LOSS_NAMES = {  # ours -> torchvision's
    "loss_rpn_cls": "loss_objectness",
    "loss_rpn_bbox": "loss_rpn_box_reg",
    "loss_cls": "loss_classifier",
    "loss_bbox": "loss_box_reg",
    "loss_mask": "loss_mask",
}


def _batch():
    """(2, 3, H, W) float images (already normalised), and per image boxes, labels, masks
    ((G, H, W) uint8 ellipses inside the boxes)."""
    images = []
    for rgb in (skdata.astronaut(), skdata.coffee()):
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()[None] / 255
        x = F.interpolate(x, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)[0]
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        images.append((x - mean) / std)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH] + 0.5
    targets = []
    for objects in OBJECTS:
        boxes = torch.tensor([box for _, box in objects])
        labels = torch.tensor([label for label, _ in objects])
        masks = []
        for x1, y1, x2, y2 in boxes.tolist():
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            masks.append(((cols - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1)
        targets.append((boxes, labels, np.stack(masks).astype(np.uint8)))
    return torch.stack(images), targets


def _torchvision_model(with_mask):
    """Random torchvision R-CNN R50-FPN with frozen batch norms (random statistics) and its
    stem and first stage frozen, identity input transform, samplers taking everything."""
    torch.manual_seed(0)
    build = detection.maskrcnn_resnet50_fpn if with_mask else detection.fasterrcnn_resnet50_fpn
    model = build(
        weights=None,
        weights_backbone=None,
        num_classes=NUM_CLASSES + 1,
        min_size=HEIGHT,
        max_size=WIDTH,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        rpn_batch_size_per_image=TAKE_ALL,
        rpn_positive_fraction=1.0,
        box_batch_size_per_image=TAKE_ALL,
        box_positive_fraction=1.0,
    )
    body = freeze_batch_norms(model.backbone.body)
    for module in (body.conv1, body.layer1):  # torchvision's trainable_backbone_layers=3
        module.requires_grad_(False)
    return model.train()


def _config(with_mask, sampled_anchor_training=True):
    name = "mask_rcnn_r50_fpn_torchvision.py" if with_mask else "faster_rcnn_r50_fpn_torchvision.py"
    roi_head = dict(bbox_head=dict(num_classes=NUM_CLASSES))
    if with_mask:
        roi_head["mask_head"] = dict(num_classes=NUM_CLASSES)
    take_all = dict(sampler=dict(num=TAKE_ALL, pos_fraction=1.0))
    return load_config(
        str(CONFIGS / name),
        dict(
            model=dict(
                backbone=dict(fold_norm=False),
                rpn_head=dict(sampled_anchor_training=sampled_anchor_training),
                roi_head=roi_head,
            ),
            train_cfg=dict(rpn=take_all, rcnn=take_all),
        ),
    )


def _ours(tv_model, with_mask, sampled_anchor_training=True):
    cfg = _config(with_mask, sampled_anchor_training)
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    state, meta = convert_torchvision_detection(tv_model.state_dict())
    assert meta["num_classes"] == NUM_CLASSES
    model.load_state_dict(state, strict=True)
    return model.train()


def _losses_torchvision(model, images, targets):
    tv_targets = [
        dict(boxes=boxes, labels=labels + 1, masks=torch.from_numpy(masks))
        for boxes, labels, masks in targets
    ]
    return model(list(images), tv_targets)


def _losses_ours(model, images, targets, with_mask):
    """Our losses through the data-sample contract (one DetDataSample per image)."""
    shape = (HEIGHT, WIDTH, 3)
    meta = dict(img_shape=shape, pad_shape=shape, ori_shape=shape,
                scale_factor=np.ones(4, dtype=np.float32), flip=False)  # fmt: skip
    samples = []
    for boxes, labels, masks in targets:
        gt = InstanceData(bboxes=boxes, labels=labels)
        if with_mask:
            gt.masks = BitmapMasks(masks, HEIGHT, WIDTH)
        samples.append(DetDataSample(dict(meta), gt_instances=gt))
    losses = model(img=images, data_samples=samples)
    return {name: value for name, value in losses.items() if name.startswith("loss")}


def _torchvision_grads_as_ours(tv_model):
    """torchvision's parameter gradients, renamed and re-ordered into our layout."""
    grads = {
        name: param.grad for name, param in tv_model.named_parameters() if param.grad is not None
    }
    # the converter re-orders class rows; it needs the classifier key, which has a gradient
    return convert_torchvision_detection(grads)[0]


def _assert_same_losses(ours, theirs, with_mask):
    names = set(LOSS_NAMES) if with_mask else set(LOSS_NAMES) - {"loss_mask"}
    assert set(ours) == names
    for name in names:
        got, want = ours[name].item(), theirs[LOSS_NAMES[name]].item()
        assert want > 0, name
        assert abs(got - want) <= 1e-4 * abs(want), (name, got, want)


def _assert_same_grads(model, tv_model):
    expected = _torchvision_grads_as_ours(tv_model)
    ours = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert set(ours) == set(expected)
    worst = {}
    for name, want in expected.items():
        got = ours[name]
        assert got is not None, name
        scale = want.abs().max().item()
        worst[name] = (got - want).abs().max().item() / max(scale, 1e-12)
    name = max(worst, key=worst.get)
    assert worst[name] <= 1e-4, (name, worst[name])


def _assert_same_weights(model, tv_model, atol=1e-5):
    expected = convert_torchvision_detection(tv_model.state_dict())[0]
    state = model.state_dict()
    for name, want in expected.items():
        diff = (state[name] - want).abs().max().item()
        assert diff <= atol, (name, diff)


def _check_step_for_step(with_mask):
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    images, targets = _batch()
    tv_model = _torchvision_model(with_mask)
    tv_losses = _losses_torchvision(tv_model, images, targets)
    sum(tv_losses.values()).backward()

    # the dense RPN loss first, then the sampled-anchor training (the default)
    for sampled_anchor_training in (False, True):
        model = _ours(tv_model, with_mask, sampled_anchor_training)
        losses = _losses_ours(model, images, targets, with_mask)
        _assert_same_losses(losses, tv_losses, with_mask)
        sum(losses.values()).backward()
        _assert_same_grads(model, tv_model)

    # one optimizer step from the same weights and gradients
    ours_start = {k: v.clone() for k, v in model.state_dict().items()}
    tv_start = {k: v.clone() for k, v in tv_model.state_dict().items()}
    for optimizer_cfg in (
        dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4),
        # Adam's first step is lr * g / (|g| + eps) per element, about lr times the sign of
        # the gradient: with the default eps (1e-8) every element whose gradient is at the
        # level of float rounding (a few 1e-6 here; 21% of some layers' gradients are
        # near 0 behind dead ReLUs) may flip by 2 * lr between two correct implementations.
        # An eps well above that rounding keeps the comparison about the step itself.
        dict(type="AdamW", lr=1e-4, weight_decay=1e-4, eps=1e-4),
    ):
        model.load_state_dict(ours_start)
        tv_model.load_state_dict(tv_start)
        build_optimizer(model, optimizer_cfg).step()
        kind = getattr(torch.optim, optimizer_cfg["type"])
        settings = {k: v for k, v in optimizer_cfg.items() if k != "type"}
        kind([p for p in tv_model.parameters() if p.requires_grad], **settings).step()
        _assert_same_weights(model, tv_model)


def test_mask_rcnn_training_step_matches_torchvision():
    _check_step_for_step(with_mask=True)


def test_faster_rcnn_training_step_matches_torchvision():
    _check_step_for_step(with_mask=False)


def test_torchvision_config_has_torchvision_training_settings():
    """The switches of torchvision's by-design differences, named (see the module doc)."""
    cfg = load_config(str(CONFIGS / "mask_rcnn_r50_fpn_torchvision.py"))
    train = cfg.train_cfg
    assert train.rpn.allowed_border == -1
    assert train.rpn.assigner.min_pos_iou == 0.0
    assert dict(train.rpn_proposal) == dict(
        nms_pre=2000, nms_post=None, max_num=2000, nms_thr=0.7, min_bbox_size=1e-3
    )
    assert train.rcnn.assigner.match_low_quality is False
    assert cfg.model.roi_head.bbox_head.loss_bbox.beta == pytest.approx(1 / 9)
    assert cfg.model.rpn_head.loss_bbox.beta == pytest.approx(1 / 9)
    assert train.rcnn.mask_target_aligned is False
    assert train.rcnn.mask_target_binarize is False
    # the mmdetection config keeps mmdetection's settings
    base = load_config(str(ROOT / "configs" / "mask_rcnn_r50_fpn_1x.py"))
    assert base.train_cfg.rpn.allowed_border == 0
    assert base.model.roi_head.bbox_head.loss_bbox.beta == 1.0
    assert base.train_cfg.rcnn.get("mask_target_binarize", True) is True
