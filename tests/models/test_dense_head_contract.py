"""The dense-head contract: registered prior generators (anchors, points), the shared
detections with optional score factors, a third loss through the shared anchor loss path,
an anchor-free head from its pieces alone, and FCOS's targets batched over images."""

import pytest
import torch
from torch import nn

from mmdet_like.models import build_anchor_generator, build_head, build_prior_generator
from mmdet_like.models.dense_heads import AnchorHead, BaseDenseHead, FCOSHead, flatten_levels
from mmdet_like.models.task_modules import AnchorGenerator, MlvlPointGenerator
from mmdet_like.registry import (
    ANCHOR_GENERATORS,
    BBOX_CODERS,
    HEADS,
    LOSSES,
    PRIOR_GENERATORS,
    build_from_cfg,
)
from mmdet_like.structures import InstanceData, bbox_overlaps

METAS = [dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=[1.0] * 4)] * 2


def test_points_by_hand_with_strides_and_offsets():
    generator = build_prior_generator(dict(type="MlvlPointGenerator", strides=[8, (16, 32)]))
    assert isinstance(generator, MlvlPointGenerator) and generator.num_base_priors == [1, 1]
    level0, level1 = generator.grid_priors([(2, 3), (2, 1)])
    # (y, x) raster order, cell centres
    assert level0.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert level1.tolist() == [[8, 16], [8, 48]]  # stride (w, h) = (16, 32)
    corners = MlvlPointGenerator(strides=[8], offset=0.0)
    with_stride = corners.grid_priors([(1, 2)], dtype=torch.float64, with_stride=True)[0]
    assert with_stride.dtype == torch.float64
    assert with_stride.tolist() == [[0, 0, 8, 8], [8, 0, 8, 8]]
    with pytest.raises(ValueError, match="2 feature maps for 1 levels"):
        corners.grid_priors([(1, 2), (1, 1)])


def test_point_valid_flags_mark_cells_of_the_unpadded_image():
    generator = MlvlPointGenerator(strides=[8, 16])
    flags = generator.valid_flags([(4, 4), (2, 2)], pad_shape=(20, 9))
    # ceil(20 / 8) = 3 rows, ceil(9 / 8) = 2 columns; level 1: 2 rows, 1 column
    assert flags[0].view(4, 4).int().tolist() == [[1, 1, 0, 0]] * 3 + [[0, 0, 0, 0]]
    assert flags[1].view(2, 2).int().tolist() == [[1, 0], [1, 0]]


def test_prior_generators_share_one_registry_under_both_names():
    assert ANCHOR_GENERATORS is PRIOR_GENERATORS
    assert {"AnchorGenerator", "MlvlPointGenerator"} <= set(PRIOR_GENERATORS.names)
    assert "DistancePointBBoxCoder" in BBOX_CODERS
    anchors = build_anchor_generator(
        dict(type="AnchorGenerator", strides=[8], ratios=[1.0], scales=[4])
    )
    assert isinstance(anchors, AnchorGenerator) and anchors.num_base_priors == [1]


class IoUQualityTestHead(AnchorHead):
    """An anchor head with a third output: an IoU-quality logit per anchor, trained towards
    the IoU of the decoded box with its gt, scoring detections with the class score."""

    loss_names = ("loss_cls", "loss_bbox", "loss_iou_quality")
    with_score_factors = True

    def _init_layers(self):
        super()._init_layers()
        self.conv_quality = nn.Conv2d(self.in_channels, self.num_anchors, 1)

    def forward_single(self, x):
        return self.conv_cls(x), self.conv_reg(x), self.conv_quality(x)

    def loss_score_factor(self, score_factors, deltas, targets):
        positive = (targets.labels < self.num_classes).to(score_factors.dtype)
        boxes = self.decode_bboxes(targets.anchors, deltas.detach())
        gt_boxes = self.decode_bboxes(targets.anchors, targets.bbox_targets)
        quality = bbox_overlaps(boxes, gt_boxes, is_aligned=True)
        loss = nn.functional.binary_cross_entropy_with_logits(
            score_factors, quality, reduction="none"
        )
        return (loss * positive).sum() / targets.avg_factor


def quality_head(**kwargs):
    torch.manual_seed(0)
    return IoUQualityTestHead(
        num_classes=2, in_channels=4,
        anchor_generator=dict(type="AnchorGenerator", strides=[8, 16], ratios=[1.0], scales=[4]),
        loss_cls=dict(type="FocalLoss"),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4,
                                     min_pos_iou=0.0)),
        test_cfg=dict(score_thr=0.3, nms_pre=50, nms=dict(type="nms", iou_thr=0.9),
                      max_per_img=300), **kwargs,
    )  # fmt: skip


def features():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 4, 4, generator=g)]


def test_a_third_output_gets_its_loss_through_the_shared_anchor_loss_path():
    head = quality_head()
    gts = [
        InstanceData(bboxes=torch.tensor([[4.0, 6.0, 40.0, 36.0]]), labels=torch.tensor([1])),
        InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)),
    ]
    outputs = head(features())
    assert len(outputs) == 3 and outputs[2][0].shape == (2, 1, 8, 8)
    losses = head.loss(*outputs, gts, METAS)
    assert list(losses) == list(IoUQualityTestHead.loss_names)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_iou_quality"].backward()
    assert head.conv_quality.weight.grad.abs().sum() > 0
    assert head.conv_cls.weight.grad is None  # the factor's loss reaches its own branch only


def test_without_a_loss_for_the_score_factor_the_head_says_so():
    class NoFactorLoss(IoUQualityTestHead):
        loss_score_factor = AnchorHead.loss_score_factor

    head = NoFactorLoss(num_classes=1, in_channels=4, train_cfg=dict(assigner=dict(
        type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4)))  # fmt: skip
    gts = [InstanceData(bboxes=torch.tensor([[0.0, 0.0, 30.0, 30.0]]), labels=torch.tensor([0]))]
    feats = [torch.randn(1, 4, 16 // s, 16 // s) for s in (1, 2, 4, 8, 16)]
    with pytest.raises(NotImplementedError, match="no loss_score_factor"):
        head.loss(*head(feats), gts, METAS[:1])


@pytest.mark.parametrize("sqrt_score", [False, True])
def test_detections_multiply_class_scores_by_the_score_factor(sqrt_score):
    head = quality_head().eval()
    head.sqrt_score = sqrt_score
    with torch.no_grad():  # a constant factor of sigmoid(0) = 0.5
        head.conv_quality.weight.zero_()
        head.conv_quality.bias.zero_()
        head.conv_cls.weight.mul_(50.0)
    cls_scores, bbox_preds, factors = head(features())
    with_factor = head.get_bboxes(cls_scores, bbox_preds, factors, METAS)
    head.with_score_factors = False  # the same outputs without the factor
    # mmdetection: thresholded on the class score, scored class score * factor; sqrt_score
    # (torchvision's FCOS): thresholded on sqrt(class score * factor) > 0.3, i.e. class
    # score > 2 * 0.3 ** 2
    plain = head.get_bboxes(cls_scores, bbox_preds, METAS,
                            cfg=dict(score_thr=2 * 0.3**2 if sqrt_score else 0.3))  # fmt: skip
    for got, want in zip(with_factor, plain):
        assert 10 < len(got) == len(want) < 300
        # sqrt_score keeps class scores under 0.3 whose sqrt(score * 0.5) passes
        assert bool((want.scores <= 0.3).any()) == sqrt_score
        assert torch.equal(got.labels, want.labels)
        torch.testing.assert_close(got.bboxes, want.bboxes)
        expected = (want.scores * 0.5).sqrt() if sqrt_score else want.scores * 0.5
        torch.testing.assert_close(got.scores, expected)


@HEADS.register(force=True)
class PointTestHead(BaseDenseHead):
    """An anchor-free head from the pieces alone (docs/models.md's example): points, the
    distance coder, one conv for the classes and one for the distances; its loss trains
    every point inside a gt box towards that box (the first gt holding it)."""

    def __init__(self, num_classes, in_channels, strides=(8, 16), test_cfg=None):
        super().__init__()
        self.num_classes = self.cls_out_channels = num_classes
        self.prior_generator = build_from_cfg(
            dict(type="MlvlPointGenerator", strides=strides), PRIOR_GENERATORS
        )
        self.bbox_coder = build_from_cfg(dict(type="DistancePointBBoxCoder"), BBOX_CODERS)
        self.test_cfg = dict(self.default_test_cfg, **(test_cfg or {}))
        self.conv_cls = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.loss_cls = build_from_cfg(dict(type="FocalLoss"), LOSSES)

    def forward_single(self, x):
        return self.conv_cls(x), self.conv_reg(x).exp()

    def loss(self, cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
             batch_gt_instances_ignore=None):  # fmt: skip
        sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        points = torch.cat(self.get_priors(sizes, cls_scores[0].dtype, cls_scores[0].device))
        scores = flatten_levels(cls_scores, self.num_classes)  # (N, P, C)
        boxes = self.decode_bboxes(points, flatten_levels(bbox_preds, 4))  # (N, P, 4)
        loss_cls = loss_bbox = scores.new_zeros(())
        for gt, image_scores, image_boxes in zip(batch_gt_instances, scores, boxes):
            inside = self.bbox_coder.encode(points[:, None], gt.bboxes).min(-1).values > 0
            positive = inside.any(1)
            gt_inds = inside.int().argmax(1) if inside.numel() else positive.long()
            labels = gt.labels.new_full(positive.shape, self.num_classes)
            labels[positive] = gt.labels[gt_inds[positive]]
            loss_cls = loss_cls + self.loss_cls(image_scores, labels)
            gt_boxes = gt.bboxes[gt_inds[positive]]
            loss_bbox = loss_bbox + (image_boxes[positive] - gt_boxes).abs().mean(-1).sum()
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)


def test_an_anchor_free_head_from_its_pieces_trains_and_detects():
    head = build_head(dict(type="PointTestHead", num_classes=2, in_channels=4,
                           test_cfg=dict(score_thr=0.3, max_per_img=500)))  # fmt: skip
    gts = [
        InstanceData(bboxes=torch.tensor([[4.0, 6.0, 40.0, 36.0]]), labels=torch.tensor([1])),
        InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)),
    ]
    losses = head.loss(*head(features()), gts, METAS)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_bbox"] > 0
    with torch.no_grad():  # every point: class 0 at 0.9, a box of 3 px on each side
        head.conv_cls.weight.zero_()
        head.conv_cls.bias.copy_(torch.tensor([2.2, -5.0]))
        head.conv_reg.weight.zero_()
        head.conv_reg.bias.fill_(torch.tensor(3.0).log().item())
    (detections, _) = head.get_bboxes(*head(features()), METAS)
    points = torch.cat(head.get_priors([(8, 8), (4, 4)], torch.float32, "cpu"))
    # boxes of 6 x 6 around every point, none overlapping another level's enough for NMS
    assert len(detections) == len(points) and (detections.labels == 0).all()
    centres = (detections.bboxes[:, :2] + detections.bboxes[:, 2:]) / 2
    assert torch.cdist(centres, points).min(1).values.max() < 1e-4
    torch.testing.assert_close(detections.bboxes[:, 2:] - detections.bboxes[:, :2],
                               torch.full((len(points), 2), 6.0))  # fmt: skip


def test_fcos_is_built_on_points_and_the_distance_coder():
    head = FCOSHead(num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1,
                    strides=[8, 16], regress_ranges=((-1, 32), (32, 1e8)), point_offset=0.0,
                    norm_cfg=dict(type="GN", num_groups=4))  # fmt: skip
    assert isinstance(head.prior_generator, MlvlPointGenerator)
    assert head.prior_generator.offset == 0.0 and head.with_score_factors
    assert type(head.bbox_coder).__name__ == "DistancePointBBoxCoder"
    points = head.get_priors([(1, 2), (1, 1)], torch.float16, "cpu")[0]  # exact in float32
    assert points.dtype == torch.float32 and points.tolist() == [[0, 0, 8, 8], [8, 0, 8, 8]]


def test_fcos_targets_of_a_batch_equal_those_of_each_image():
    head = FCOSHead(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
                    strides=[8, 16], regress_ranges=((-1, 24), (24, 1e8)),
                    center_sampling=True, norm_cfg=dict(type="GN", num_groups=4))  # fmt: skip
    gts = [
        InstanceData(bboxes=torch.tensor([[2.0, 3.0, 30.0, 40.0], [10.0, 10.0, 60.0, 50.0],
                                          [14.0, 5.0, 30.0, 15.0]]),
                     labels=torch.tensor([2, 0, 1])),
        InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)),
        InstanceData(bboxes=torch.tensor([[0.0, 0.0, 64.0, 64.0]]), labels=torch.tensor([1])),
    ]  # fmt: skip
    sizes = [(8, 8), (4, 4)]
    points = torch.cat(head.get_priors(sizes, torch.float32, "cpu"))
    ranges = head._regress_ranges(sizes, points)
    labels, distances = head.get_targets(points, ranges, gts)
    assert labels.shape == (3, 80) and distances.shape == (3, 80, 4)
    assert set(labels[0].tolist()) == {0, 1, 2, 3} and (labels[1] == 3).all()
    for i, gt in enumerate(gts):
        one_labels, one_distances = head.get_targets(points, ranges, [gt])
        assert torch.equal(labels[i], one_labels[0])
        positive = labels[i] < 3
        torch.testing.assert_close(distances[i][positive], one_distances[0][positive])
