"""A single-stage detector from config alone: a new head is a subclass of ``AnchorHead``
that builds two convs (``_init_layers``) and runs them (``forward_single``); anchors,
targets, losses, decoding and NMS come from the base."""

import pytest
import torch
from torch import nn

from mmdet_like.models import build_detector
from mmdet_like.models.dense_heads import AnchorHead, RPNHead
from mmdet_like.registry import HEADS
from mmdet_like.structures import DetDataSample, InstanceData, bbox_overlaps

C = 16
STRIDES = [8, 16, 32]


@HEADS.register(force=True)
class TwoConvTestHead(AnchorHead):
    """One 3x3 conv for the scores and one for the deltas: the whole new head."""

    def _init_layers(self):
        self.cls_conv = nn.Conv2d(self.in_channels, self.num_anchors * self.cls_out_channels, 3,
                                  padding=1)  # fmt: skip
        self.reg_conv = nn.Conv2d(self.in_channels, self.num_anchors * 4, 3, padding=1)

    def forward_single(self, x):
        return self.cls_conv(x), self.reg_conv(x)


def config(loss_cls, loss_bbox=None, reg_decoded_bbox=False, sampler=None):
    model = dict(
        type="SingleStageDetector",
        backbone=dict(type="ResNet", depth=18, norm_cfg=dict(type="BN", requires_grad=False)),
        neck=dict(
            type="FPN", in_channels=[128, 256, 512], out_channels=C, num_outs=3, start_level=0
        ),  # fmt: skip
        bbox_head=dict(
            type="TwoConvTestHead",
            num_classes=2,
            in_channels=C,
            anchor_generator=dict(
                type="AnchorGenerator", scales=[3], ratios=[0.5, 1.0, 2.0], strides=STRIDES
            ),  # fmt: skip
            loss_cls=loss_cls,
            loss_bbox=loss_bbox or dict(type="L1Loss", loss_weight=1.0),
            reg_decoded_bbox=reg_decoded_bbox,
        ),
    )
    model["backbone"]["out_indices"] = (1, 2, 3)
    train_cfg = dict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0),
        allowed_border=-1,
    )
    if sampler is not None:
        train_cfg["sampler"] = sampler
    test_cfg = dict(nms_pre=200, score_thr=0.05, nms=dict(type="nms", iou_thr=0.5),
                    max_per_img=20)  # fmt: skip
    return model, train_cfg, test_cfg


def batch(num=2, seed=0):
    """Images of 96 x 96 with one bright square of class 0 and one dark of class 1."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(num, 3, 96, 96, generator=g) * 0.1
    boxes, labels = [], []
    for i in range(num):
        xy = torch.randint(0, 40, (2, 2), generator=g).float()
        side = torch.randint(24, 40, (2,), generator=g).float()
        b = torch.stack([torch.cat([xy[k], xy[k] + side[k]]) for k in range(2)])
        for k, value in enumerate((2.0, -2.0)):
            x1, y1, x2, y2 = b[k].long().tolist()
            img[i, :, y1:y2, x1:x2] = value
        boxes.append(b)
        labels.append(torch.tensor([0, 1]))
    metas = [dict(img_shape=(96, 96, 3), pad_shape=(96, 96, 3), ori_shape=(96, 96, 3),
                  scale_factor=torch.ones(4).numpy(), flip=False) for _ in range(num)]  # fmt: skip
    return img, metas, boxes, labels


SIGMOID = dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
SOFTMAX = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)


@pytest.mark.parametrize(
    "loss_cls, extra",
    [
        (SIGMOID, {}),
        (
            SOFTMAX,
            dict(
                sampler=dict(
                    type="RandomSampler", num=64, pos_fraction=0.5, add_gt_as_proposals=False
                )
            ),
        ),  # fmt: skip
        (SIGMOID, dict(loss_bbox=dict(type="GIoULoss", loss_weight=2.0), reg_decoded_bbox=True)),
    ],
    ids=["sigmoid-all-anchors", "softmax-sampled", "giou-decoded"],
)
def test_a_two_conv_head_from_config_trains_and_detects(loss_cls, extra):
    model, train_cfg, test_cfg = config(loss_cls, **extra)
    torch.manual_seed(0)
    detector = build_detector(model, train_cfg, test_cfg)
    detector.init_weights()
    head = detector.bbox_head
    assert isinstance(head, TwoConvTestHead) and head.num_classes == 2
    assert head.cls_out_channels == (2 if loss_cls is SIGMOID else 3)
    img, metas, boxes, labels = batch()
    samples = [
        DetDataSample(meta, gt_instances=InstanceData(bboxes=b, labels=lab))
        for meta, b, lab in zip(metas, boxes, labels)
    ]
    optimizer = torch.optim.AdamW(detector.parameters(), lr=2e-3)
    history = []
    detector.train()
    for _ in range(25):
        losses = detector(img=img, data_samples=samples)
        assert set(losses) == {"loss_cls", "loss_bbox"}
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.6 * history[0], history
    detector.eval()
    (predicted,) = detector(img=[img[0]], data_samples=[DetDataSample(metas[0])],
                            return_loss=False, rescale=True)  # fmt: skip
    pred = predicted.pred_instances
    assert pred.keys() == ["bboxes", "scores", "labels"] and len(pred) > 0
    # the per-class lists of the legacy edge hold the same detections
    legacy = detector(img=[img[0]], img_metas=[[metas[0]]], return_loss=False, rescale=True)
    assert len(legacy[0]) == 2 and sum(len(r) for r in legacy[0]) == len(pred)


def test_targets_put_each_gt_class_on_its_anchors():
    model, train_cfg, test_cfg = config(SIGMOID)
    detector = build_detector(model, train_cfg, test_cfg)
    head = detector.bbox_head
    img, metas, boxes, labels = batch()
    cls_scores, _ = head(detector.extract_feat(img))
    anchors, sizes = head._anchors(cls_scores)
    gts = [InstanceData(bboxes=b, labels=lab) for b, lab in zip(boxes, labels)]
    targets = head.get_targets(anchors, sizes, gts, metas)
    # PseudoSampler: every assigned anchor; the losses average over the positives
    positives = targets.labels < head.num_classes
    assert torch.equal(targets.avg_factor, positives.sum().float())
    assert set(targets.labels[positives].tolist()) == {0, 1}
    assert (targets.labels[~positives] == head.num_classes).all()
    for i in range(2):
        mine = targets.image_inds == i
        ious = bbox_overlaps(targets.anchors[mine & positives], boxes[i])
        best = ious.argmax(1)
        assert torch.equal(labels[i][best], targets.labels[mine & positives])


def test_rpn_head_is_an_anchor_head_and_detection_heads_give_no_proposals():
    assert issubclass(RPNHead, AnchorHead)
    model, train_cfg, test_cfg = config(SIGMOID)
    head = build_detector(model, train_cfg, test_cfg).bbox_head
    with pytest.raises(NotImplementedError, match="gives no proposals"):
        head.get_proposals([], [], [])


@pytest.mark.parametrize("nms_pre", [5, 40, 0])
def test_top_pairs_ranked_on_logits_equal_ranked_on_scores(nms_pre):
    """Ranking logits and activating only the kept pairs selects what thresholding and ranking
    the sigmoid scores selects (the memory-saving path of RetinaNet and FCOS inference), also
    where fewer pairs than nms_pre pass the threshold."""
    from mmdet_like.models.dense_heads.anchor_head import top_pairs

    torch.manual_seed(0)
    logits = torch.randn(2, 30, 4) * 2 - 2.5  # about 12 of 120 pairs above 0.3 per image
    expected = top_pairs(logits.sigmoid(), 0.3, nms_pre)
    got = top_pairs(logits, 0.3, nms_pre, activation=torch.sigmoid)
    kept = expected[0] > 0.3
    assert torch.equal(got[0] > 0.3, kept)
    assert 0 < int(kept[0].sum()) < 40
    # the same pairs (locations and labels exactly); the scores are the sigmoid of the same
    # logits, but taken at other places of another tensor: ATen's vectorised and scalar
    # sigmoid differ by up to 2 ulps (1.7e-7 relative; 4% of values on AVX2, measured on
    # 20,000), and which elements take which path depends on the vector width
    torch.testing.assert_close(got[0][kept], expected[0][kept], rtol=5e-7, atol=0)
    for want, have in zip(expected[1:], got[1:]):
        assert torch.equal(want[kept], have[kept])
    assert bool((got[0][~kept] == -1).all())
