"""ATSS and GFL, the two families built on the dense-head contract: each detector from its
demo config trains (finite losses of the expected names, a gradient on every trainable
parameter, two optimizer steps) and detects; batches without positives give zero box losses
that are still in the graph; the losses are averages (a batch and its duplicate give the
same); ATSS scores detections by class score x centre-ness, GFL by its joint class-quality
score; GFL decodes distributions into boxes by their expectation in strides."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.engine import build_optimizer, load_config
from mmdet_like.models import build_detector
from mmdet_like.models.dense_heads import ATSSHead, GFLHead, flatten_levels
from mmdet_like.registry import BuildError
from mmdet_like.structures import DetDataSample, InstanceData, bbox_overlaps

ROOT = Path(__file__).resolve().parents[2]
DEMO = {
    "ATSS": ROOT / "configs" / "demo" / "atss_r18_fpn_demo.py",
    "GFL": ROOT / "configs" / "demo" / "gfl_r18_fpn_demo.py",
}
LOSS_NAMES = {
    "ATSS": {"loss_cls", "loss_bbox", "loss_centerness"},
    "GFL": {"loss_cls", "loss_bbox", "loss_dfl"},
}
SIZE = 64  # tiny images: levels of 8x8, 4x4 and 2x2


def demo_model(family, **test_cfg):
    cfg = load_config(str(DEMO[family]))
    # the demo's anchors are 8 strides wide (64 px on P3); on these 64 px images, anchors of
    # 2 strides (16, 32, 64 px) give every level positives, so every head weight a gradient
    cfg.model.bbox_head.anchor_generator.octave_base_scale = 2
    torch.manual_seed(0)
    model = build_detector(cfg.model, cfg.train_cfg, dict(cfg.test_cfg.to_dict(), **test_cfg))
    model.init_weights()
    return model, cfg


def meta():
    return dict(img_shape=(SIZE, SIZE, 3), pad_shape=(SIZE, SIZE, 3), ori_shape=(SIZE, SIZE, 3),
                scale_factor=np.ones(4, dtype=np.float32), flip=False)  # fmt: skip


def samples(boxes_per_image):
    out = []
    for boxes in boxes_per_image:
        bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        gt = InstanceData(bboxes=bboxes, labels=torch.arange(len(bboxes)) % 4)
        out.append(DetDataSample(metainfo=meta(), gt_instances=gt))
    return out


# objects for every level: about 20 px (P3), 30 px (P4), 60 px (P5)
BOXES = [[[8, 10, 30, 40], [34, 20, 60, 58]], [[20, 4, 44, 28], [2, 3, 62, 61]]]


@pytest.mark.parametrize("family", sorted(DEMO))
def test_demo_detector_trains_two_steps_and_detects(family):
    model, cfg = demo_model(family, score_thr=0.0, max_per_img=10)
    assert type(model).__name__ == family
    head = model.bbox_head
    assert isinstance(head, ATSSHead if family == "ATSS" else GFLHead)
    optimizer = build_optimizer(model, cfg.optimizer)
    torch.manual_seed(1)
    img = torch.randn(2, 3, SIZE, SIZE)
    for step in range(2):
        optimizer.zero_grad()
        losses = model(img=img, data_samples=samples(BOXES))
        assert set(losses) == LOSS_NAMES[family]
        assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
        sum(losses.values()).backward()
        if step == 0:  # a gradient reaches every parameter (the residual branches' are 0
            # while their last norm starts at 0, zero_init_residual), every head's is non-zero
            assert all(p.grad is not None and torch.isfinite(p.grad).all()
                       for p in model.parameters() if p.requires_grad)  # fmt: skip
            still = [n for n, p in head.named_parameters() if not p.grad.abs().sum() > 0]
            assert not still
        optimizer.step()

    model.eval()
    test_samples = [DetDataSample(metainfo=meta()) for _ in range(2)]
    outputs = model(img=img, data_samples=test_samples, return_loss=False, rescale=True)
    for output in outputs:
        pred = output.pred_instances
        assert len(pred) == 10  # score_thr 0: max_per_img of them
        assert pred.bboxes.shape == (10, 4) and pred.scores.shape == pred.labels.shape == (10,)
        assert ((pred.labels >= 0) & (pred.labels < 4)).all()
        assert ((pred.scores > 0) & (pred.scores < 1)).all()
        assert (pred.bboxes >= 0).all() and (pred.bboxes <= SIZE).all()


@pytest.mark.parametrize("family", sorted(DEMO))
def test_without_positives_the_box_losses_are_zero_and_in_the_graph(family):
    model, _ = demo_model(family)
    losses = model(img=torch.randn(2, 3, SIZE, SIZE), data_samples=samples([[], []]))
    for name, value in losses.items():
        assert value.requires_grad, name
        if name == "loss_cls":
            assert value > 0
        else:
            assert value.item() == 0.0, name
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("family", sorted(DEMO))
def test_losses_are_averages_a_duplicated_batch_gives_the_same(family):
    model, _ = demo_model(family)
    # class scores of 0.5: GFL's box-loss weights (the predicted quality) add up to more
    # than 1 per image, the least their sum is divided by (mmdetection's clamp)
    torch.nn.init.zeros_(model.bbox_head.retina_cls.bias)
    torch.manual_seed(2)
    img = torch.randn(1, 3, SIZE, SIZE)
    model.eval()  # batch statistics would differ between the two batches
    once = model.forward_train(img, samples(BOXES[:1]))
    twice = model.forward_train(img.repeat(2, 1, 1, 1), samples(BOXES[:1] * 2))
    for name in LOSS_NAMES[family]:
        torch.testing.assert_close(twice[name], once[name], rtol=1e-5, atol=1e-7)


def test_atss_scores_detections_by_class_score_times_centerness():
    model, _ = demo_model("ATSS", score_thr=0.0, max_per_img=20)
    head = model.bbox_head.eval()
    torch.manual_seed(3)
    cls_scores, bbox_preds, _ = head([torch.randn(1, 64, s, s) for s in (8, 4, 2)])
    cls_scores = [3 * torch.randn_like(x) for x in cls_scores]  # well-separated scores
    # centre-ness logit 0 (factor 0.5) against a logit that makes the factor 1
    half = [torch.zeros_like(x[:, :1]) for x in cls_scores]
    full = [torch.full_like(x[:, :1], 40.0) for x in cls_scores]
    metas = [meta()]
    with_half = head.get_bboxes(cls_scores, bbox_preds, half, metas)[0]
    with_full = head.get_bboxes(cls_scores, bbox_preds, full, metas)[0]
    torch.testing.assert_close(with_half.scores, 0.5 * with_full.scores)
    torch.testing.assert_close(with_half.bboxes, with_full.bboxes)


def test_gfl_scores_are_its_class_quality_scores_and_boxes_the_distributions_means():
    model, _ = demo_model("GFL", score_thr=0.0, max_per_img=5)
    head = model.bbox_head.eval()
    assert not head.with_score_factors and head.bbox_pred_channels == 68
    sizes = [(8, 8), (4, 4), (2, 2)]
    cls_scores = [torch.randn(1, 4, h, w) for h, w in sizes]
    # every distribution one-hot: left 1, top 2, right 3, bottom 4 strides
    one_hot = torch.full((4, 17), -1e4)
    one_hot[[0, 1, 2, 3], [1, 2, 3, 4]] = 0.0
    bbox_preds = [one_hot.reshape(68, 1, 1).expand(1, 68, h, w).clone() for h, w in sizes]
    result = head.get_bboxes(cls_scores, bbox_preds, [meta()])[0]
    best = max(x.max() for x in cls_scores).sigmoid()
    torch.testing.assert_close(result.scores[0], best)  # no factor: the class score itself
    # the best logit's prior: its anchor's centre and its level's stride
    level = max(range(3), key=lambda i: cls_scores[i].max())
    flat = cls_scores[level][0].permute(1, 2, 0).reshape(-1, 4)
    prior = head.get_priors(sizes, torch.float32, "cpu")[level][flat.max(1).values.argmax()]
    cx, cy = (prior[0] + prior[2]) / 2, (prior[1] + prior[3]) / 2
    stride = prior[4]
    expected = torch.stack([cx - stride, cy - 2 * stride, cx + 3 * stride, cy + 4 * stride])
    torch.testing.assert_close(result.bboxes[0], expected.clamp(0, SIZE))


def test_gfl_box_losses_weight_by_the_detached_quality():
    model, _ = demo_model("GFL")
    head = model.bbox_head
    feats = [torch.randn(2, 64, s, s) for s in (8, 4, 2)]
    cls_scores, bbox_preds = head(feats)
    gts = [s.gt_instances for s in samples(BOXES)]
    losses = head.loss(cls_scores, bbox_preds, gts, [meta(), meta()])
    for name in ("loss_bbox", "loss_dfl"):
        grads = torch.autograd.grad(losses[name], cls_scores, retain_graph=True,
                                    allow_unused=True)  # fmt: skip
        assert all(g is None or not g.any() for g in grads), name
    (grad_cls,) = torch.autograd.grad(losses["loss_cls"], cls_scores[:1], retain_graph=True)
    assert grad_cls.abs().sum() > 0


def test_heads_refuse_what_their_losses_do_not_normalise():
    model, cfg = demo_model("ATSS")
    head_cfg = cfg.model.bbox_head.to_dict()
    with pytest.raises(BuildError, match="PseudoSampler"):
        build_detector(dict(cfg.model.to_dict(), bbox_head=head_cfg),
                       dict(cfg.train_cfg.to_dict(), loss_avg="image"), cfg.test_cfg)  # fmt: skip
    with pytest.raises(ValueError, match="decoded boxes"):
        GFLHead(num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1,
                norm_cfg=None, reg_decoded_bbox=False)  # fmt: skip
    with pytest.raises(ValueError, match="one anchor per location"):
        GFLHead(num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1, norm_cfg=None,
                anchor_generator=dict(type="AnchorGenerator", ratios=[0.5, 1.0], scales=[4],
                                      strides=[8]))  # fmt: skip


def positives(head, cls_scores, gts):
    """The batch's assigned anchors (shared targets) and the positives among them."""
    anchors, sizes = head._anchors(cls_scores)
    targets = head.get_targets(anchors, sizes, gts, [meta(), meta()])
    return targets, targets.labels < head.num_classes


def centre_and_sides(anchors, gt_boxes):
    centres = (anchors[:, :2] + anchors[:, 2:4]) / 2
    sides = torch.cat([centres - gt_boxes[:, :2], gt_boxes[:, 2:] - centres], dim=1)
    return centres, sides  # (l, t, r, b)


def test_atss_losses_are_normalised_as_mmdetection():
    """Box loss: GIoU x centre-ness target over the targets' sum; centre-ness and class
    losses over the positives (hand formulas on the shared targets)."""
    model, _ = demo_model("ATSS")
    head = model.bbox_head
    torch.manual_seed(4)
    cls_scores, bbox_preds, centernesses = head([torch.randn(2, 64, s, s) for s in (8, 4, 2)])
    gts = [s.gt_instances for s in samples(BOXES)]
    losses = head.loss(cls_scores, bbox_preds, centernesses, gts, [meta(), meta()])
    targets, pos = positives(head, cls_scores, gts)
    at = (targets.image_inds[pos], targets.anchor_inds[pos])
    anchors, gt_boxes = targets.anchors[pos], targets.bbox_targets[pos]
    left, top, right, bottom = centre_and_sides(anchors, gt_boxes)[1].unbind(1)
    target = ((torch.minimum(left, right) / torch.maximum(left, right))
              * (torch.minimum(top, bottom) / torch.maximum(top, bottom))).sqrt()  # fmt: skip
    boxes = head.bbox_coder.decode(anchors, flatten_levels(bbox_preds, 4)[at])
    giou = bbox_overlaps(boxes, gt_boxes, mode="giou", is_aligned=True)
    expected_bbox = 2.0 * (target * (1 - giou)).sum() / target.sum().clamp(min=1)
    logits = flatten_levels(centernesses, 1)[at][:, 0]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    num_pos = pos.sum()
    assert num_pos >= 4 and target.sum() > 1
    torch.testing.assert_close(losses["loss_bbox"], expected_bbox)
    torch.testing.assert_close(losses["loss_centerness"], bce / num_pos)


def test_gfl_losses_are_normalised_as_mmdetection():
    """QFL over every assigned anchor, averaged over the positives, towards the IoU of the
    decoded box; GIoU and DFL weighted by the best class score and averaged over its sum
    (DFL also over the four sides)."""
    model, _ = demo_model("GFL")
    head = model.bbox_head
    torch.nn.init.zeros_(head.retina_cls.bias)  # weights adding up to more than 1
    torch.manual_seed(5)
    cls_scores, bbox_preds = head([torch.randn(2, 64, s, s) for s in (8, 4, 2)])
    gts = [s.gt_instances for s in samples(BOXES)]
    losses = head.loss(cls_scores, bbox_preds, gts, [meta(), meta()])
    targets, pos = positives(head, cls_scores, gts)
    at = (targets.image_inds[pos], targets.anchor_inds[pos])
    anchors, gt_boxes = targets.anchors[pos], targets.bbox_targets[pos]
    stride = anchors[:, 4:5]
    centres, sides = centre_and_sides(anchors, gt_boxes)
    log_probs = flatten_levels(bbox_preds, 68)[at].reshape(-1, 4, 17).log_softmax(-1)
    distances = (log_probs.exp() * torch.arange(17.0)).sum(-1) * stride  # pixels
    boxes = torch.cat([centres - distances[:, :2], centres + distances[:, 2:]], dim=1)
    logits = flatten_levels(cls_scores, 4)
    weight = logits[at].sigmoid().max(1).values.detach()
    assert weight.sum() > 1
    giou = bbox_overlaps(boxes, gt_boxes, mode="giou", is_aligned=True)
    torch.testing.assert_close(losses["loss_bbox"], 2.0 * (weight * (1 - giou)).sum()
                               / weight.sum(), rtol=1e-5, atol=1e-6)  # fmt: skip
    side = (sides / stride).clamp(0, 16 - 0.1)  # the bins' distances
    left = side.floor()
    dfl = -(log_probs.gather(2, left.long()[..., None])[..., 0] * (left + 1 - side)
            + log_probs.gather(2, left.long()[..., None] + 1)[..., 0] * (side - left))  # fmt: skip
    expected_dfl = 0.25 * (weight[:, None] * dfl).sum() / (4 * weight.sum())
    torch.testing.assert_close(losses["loss_dfl"], expected_dfl, rtol=1e-5, atol=1e-6)
    # QFL: every sampled anchor, target the IoU at the positive's class
    quality = torch.zeros(targets.labels.numel(), 4)
    iou = bbox_overlaps(boxes, gt_boxes, is_aligned=True)
    quality[pos.nonzero()[:, 0], targets.labels[pos]] = iou
    sampled = logits[targets.image_inds, targets.anchor_inds]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(sampled, quality, reduction="none")
    qfl = (quality - sampled.sigmoid()).abs() ** 2 * bce
    torch.testing.assert_close(losses["loss_cls"], qfl.sum() / pos.sum(), rtol=1e-5, atol=1e-6)
