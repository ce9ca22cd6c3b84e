"""The assigner contract (BaseAssigner.assign on InstanceData), ATSSAssigner and
HungarianAssigner on hand-made cases and against plain-loop references, the match costs
against hand-computed values, and AssignResult's IoU-quality targets."""

import itertools
import math

import pytest
import torch

from mmdet_like.models import build_assigner
from mmdet_like.models.dense_heads import AnchorHead
from mmdet_like.models.task_modules import (
    AssignResult,
    ATSSAssigner,
    BaseAssigner,
    BaseMatchCost,
    BBoxL1Cost,
    ClassificationCost,
    FocalLossCost,
    HungarianAssigner,
    IoUCost,
    MaxIoUAssigner,
)
from mmdet_like.registry import BBOX_ASSIGNERS, MATCH_COSTS, BuildError, build_from_cfg
from mmdet_like.structures import InstanceData, bbox_overlaps


def priors(*boxes):
    return InstanceData(priors=torch.tensor(boxes, dtype=torch.float32))


def gts(boxes, labels=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).view(-1, 4)
    labels = torch.arange(len(boxes)) + 5 if labels is None else torch.tensor(labels)
    return InstanceData(bboxes=boxes, labels=labels)


def random_boxes(num, generator, scale=100.0):
    xy = torch.rand(num, 2, generator=generator) * scale
    wh = torch.rand(num, 2, generator=generator) * scale / 3 + 2
    return torch.cat([xy, xy + wh], 1)


def test_every_assigner_is_a_base_assigner_and_registered():
    assert BaseAssigner.__abstractmethods__ == frozenset({"assign"})
    with pytest.raises(TypeError):
        BaseAssigner()
    for name in ("MaxIoUAssigner", "ATSSAssigner", "HungarianAssigner"):
        assert issubclass(BBOX_ASSIGNERS.get(name), BaseAssigner)
    assert MATCH_COSTS.names == ["BBoxL1Cost", "ClassificationCost", "FocalLossCost", "IoUCost"]


# ------------------------------------------------------------------------------ MaxIoU
def reference_max_iou(overlaps, pos_thr, neg_thr, min_pos_iou):
    """Faster R-CNN's rules as a loop over gts (a gt claims all its best candidates)."""
    max_overlaps, argmax = overlaps.max(0)
    gt_inds = torch.full((overlaps.size(1),), -1)
    gt_inds[(max_overlaps >= 0) & (max_overlaps < neg_thr)] = 0
    pos = max_overlaps >= pos_thr
    gt_inds[pos] = argmax[pos] + 1
    gt_max = overlaps.max(1).values
    for i in range(overlaps.size(0)):
        if gt_max[i] >= min_pos_iou and gt_max[i] > 0:
            gt_inds[overlaps[i] == gt_max[i]] = i + 1
    return gt_inds


def test_max_iou_on_instances_matches_the_rules_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.2)
    for _ in range(5):
        candidates, boxes = random_boxes(200, g), random_boxes(6, g)
        labels = torch.randint(0, 4, (6,), generator=g)
        valid = torch.rand(200, generator=g) > 0.25
        result = assigner.assign(
            InstanceData(priors=candidates), InstanceData(bboxes=boxes, labels=labels),
            InstanceData(), valid_mask=valid,
        )  # fmt: skip
        overlaps = bbox_overlaps(boxes, candidates).masked_fill(~valid, -1.0)
        expected = reference_max_iou(overlaps, 0.5, 0.3, 0.2)
        assert torch.equal(result.gt_inds, expected)
        assert (result.gt_inds[~valid] == -1).all()
        assert torch.equal(
            result.labels, torch.where(expected > 0, labels[(expected - 1).clamp(min=0)], -1)
        )
        torch.testing.assert_close(result.max_overlaps, overlaps.max(0).values)


def test_max_iou_reads_no_labels_when_the_gts_have_none():
    result = MaxIoUAssigner(0.5, 0.4).assign(
        priors([0.0, 0.0, 10.0, 10.0]), InstanceData(bboxes=torch.tensor([[0.0, 0, 10, 10]]))
    )
    assert result.gt_inds.tolist() == [1] and result.labels is None


# -------------------------------------------------------------------------------- ATSS
def test_atss_hand_made_two_levels():
    """One gt [0, 0, 10, 10]; topk 2: the candidates are a0, a1 (level 0) and a3, a4
    (level 1), IoUs 0.16, 0.16, 90/110, 20/180: mean 0.3123, std 0.3380, threshold 0.6504;
    only a3 reaches it (its centre (6, 5) is inside the gt)."""
    level0 = [[3.0, 3, 7, 7], [6.0, 3, 10, 7], [20.0, 20, 24, 24]]
    level1 = [[1.0, 0, 11, 10], [-8.0, 0, 2, 10], [30.0, 30, 40, 40]]
    result = ATSSAssigner(topk=2).assign(
        priors(*level0, *level1), gts([0.0, 0, 10, 10], [3]), num_level_priors=[3, 3]
    )
    assert result.gt_inds.tolist() == [0, 0, 0, 1, 0, 0]
    assert result.labels.tolist() == [-1, -1, -1, 3, -1, -1]
    ious = torch.tensor([0.16, 0.16, 0.0, 90 / 110, 20 / 180, 0.0])
    torch.testing.assert_close(result.max_overlaps, ious)
    threshold = ious[[0, 1, 3, 4]].mean() + ious[[0, 1, 3, 4]].std()
    assert abs(threshold.item() - 0.6504) < 1e-3


def test_atss_needs_the_centre_inside_the_gt():
    """c0's IoU (1/3) is above the threshold (about 0.25) of the four candidates, but its
    centre (10, 5) lies on the gt's edge; 0.1 pixel to the left it is inside."""
    far = [[-5.0, -5, 1, 1], [12.0, 12, 14, 14], [-4.0, 12, -2, 14]]
    on_edge = ATSSAssigner().assign(
        priors([5.0, 0, 15, 10], *far), gts([0.0, 0, 10, 10]), num_level_priors=[4]
    )
    assert on_edge.gt_inds.tolist() == [0, 0, 0, 0]
    inside = ATSSAssigner().assign(
        priors([4.9, 0, 14.9, 10], *far), gts([0.0, 0, 10, 10]), num_level_priors=[4]
    )
    assert inside.gt_inds.tolist() == [1, 0, 0, 0]


def test_atss_prior_of_two_gts_goes_to_the_one_it_overlaps_most():
    """p0 is a positive of both gts (the other priors overlap neither: threshold 0.75 *
    IoU); it overlaps gt1 more (0.905 against 0.739); with equal IoUs the first gt."""
    far = [[30.0, 30, 32, 32], [-30.0, -30, -28, -28], [30.0, -30, 32, -28]]
    two = gts([[0.0, 0, 10, 10], [2.0, 0, 12, 10]], [7, 8])
    result = ATSSAssigner().assign(priors([1.5, 0, 11.5, 10], *far), two, num_level_priors=[4])
    assert result.gt_inds.tolist() == [2, 0, 0, 0]
    assert result.labels.tolist() == [8, -1, -1, -1]
    torch.testing.assert_close(result.max_overlaps[0], torch.tensor(95 / 105))
    tied = ATSSAssigner().assign(priors([1.0, 0, 11, 10], *far), two, num_level_priors=[4])
    assert tied.gt_inds.tolist() == [1, 0, 0, 0]


def reference_atss(boxes, gt_boxes, num_level_priors, topk, usable):
    """ATSS as loops: the usable priors only (mmdetection's ATSSHead keeps the anchors inside
    the image), per gt and level the topk nearest centres, threshold mean + std, centre
    inside, a prior of several gts to the one of max IoU."""
    level_of = torch.repeat_interleave(
        torch.arange(len(num_level_priors)), torch.tensor(num_level_priors)
    )
    keep = torch.nonzero(usable).squeeze(1).tolist()
    ious = bbox_overlaps(boxes, gt_boxes)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    positive_of = {i: [] for i in keep}
    for g in range(len(gt_boxes)):
        candidates = []
        for level in range(len(num_level_priors)):
            in_level = [i for i in keep if level_of[i] == level]
            dist = [math.dist(centres[i].tolist(), gt_centres[g].tolist()) for i in in_level]
            order = sorted(range(len(in_level)), key=lambda k: dist[k])[:topk]
            candidates += [in_level[k] for k in order]
        values = ious[candidates, g]
        threshold = values.mean() + values.std()
        x1, y1, x2, y2 = gt_boxes[g].tolist()
        for i in candidates:
            cx, cy = centres[i].tolist()
            if ious[i, g] >= threshold and min(cx - x1, cy - y1, x2 - cx, y2 - cy) > 0.01:
                positive_of[i].append(g)
    gt_inds = torch.where(usable, 0, -1)
    for i, owners in positive_of.items():
        if owners:
            gt_inds[i] = max(owners, key=lambda g: (ious[i, g].item(), -g)) + 1
    return gt_inds


@pytest.mark.parametrize("with_invalid", [False, True])
def test_atss_matches_a_loop_reference_on_random_anchors(with_invalid):
    g = torch.Generator().manual_seed(1 + with_invalid)
    num_level_priors = [60, 30, 12]
    sizes = [8.0, 20.0, 45.0]
    boxes = []
    for count, size in zip(num_level_priors, sizes):
        centres = torch.rand(count, 2, generator=g) * 100
        half = size / 2 * (0.8 + 0.4 * torch.rand(count, 2, generator=g))
        boxes.append(torch.cat([centres - half, centres + half], 1))
    boxes = torch.cat(boxes)
    gt_boxes = random_boxes(5, g)
    valid = torch.rand(len(boxes), generator=g) > 0.3 if with_invalid else None
    result = ATSSAssigner(topk=5).assign(
        InstanceData(priors=boxes), InstanceData(bboxes=gt_boxes, labels=torch.arange(5)),
        valid_mask=valid, num_level_priors=num_level_priors,
    )  # fmt: skip
    usable = torch.ones(len(boxes), dtype=torch.bool) if valid is None else valid
    expected = reference_atss(boxes, gt_boxes, num_level_priors, 5, usable)
    assert (expected > 0).sum() >= 5  # the case is not trivial
    assert torch.equal(result.gt_inds, expected)


def test_atss_crowd_boxes_ignore_their_priors():
    """p1 lies in the crowd box: ignored, and out of the candidates (IoUs 1, 0, 0, 0 of the
    others: threshold 0.75)."""
    crowd = InstanceData(bboxes=torch.tensor([[20.0, 20, 40, 40]]))
    far = [[50.0, 50, 60, 60], [-60.0, 50, -50, 60], [50.0, -60, 60, -50]]
    boxes = priors([0.0, 0, 10, 10], [22.0, 22, 30, 30], *far)
    assigner = ATSSAssigner(ignore_iof_thr=0.5)
    result = assigner.assign(boxes, gts([0.0, 0, 10, 10]), crowd, num_level_priors=[5])
    assert result.gt_inds.tolist() == [1, -1, 0, 0, 0]
    no_gt = assigner.assign(boxes, gts(torch.zeros(0, 4)), crowd, num_level_priors=[5])
    assert no_gt.gt_inds.tolist() == [0, -1, 0, 0, 0]
    unread = ATSSAssigner().assign(boxes, gts([0.0, 0, 10, 10]), crowd, num_level_priors=[5])
    assert unread.gt_inds.tolist() == [1, 0, 0, 0, 0]


def test_atss_empty_gts_and_priors_and_errors():
    assigner = ATSSAssigner()
    boxes = priors([0.0, 0, 10, 10], [5.0, 5, 20, 20])
    no_gts = assigner.assign(boxes, gts(torch.zeros(0, 4)), num_level_priors=[2])
    assert no_gts.gt_inds.tolist() == [0, 0] and no_gts.labels.tolist() == [-1, -1]
    assert no_gts.max_overlaps.tolist() == [0.0, 0.0] and no_gts.num_gts == 0
    empty = assigner.assign(
        InstanceData(priors=torch.zeros(0, 4)), gts([0.0, 0, 5, 5]), num_level_priors=[0, 0]
    )
    assert empty.gt_inds.shape == (0,) and empty.num_gts == 1
    with pytest.raises(ValueError, match="num_level_priors"):
        assigner.assign(boxes, gts([0.0, 0, 5, 5]))
    with pytest.raises(ValueError, match="add up"):
        assigner.assign(boxes, gts([0.0, 0, 5, 5]), num_level_priors=[1, 2])
    with pytest.raises(ValueError, match="points"):
        assigner.assign(InstanceData(priors=torch.zeros(2, 2)), gts([0.0, 0, 5, 5]),
                        num_level_priors=[2])  # fmt: skip
    with pytest.raises(BuildError, match="topk"):
        build_assigner(dict(type="ATSSAssigner", topk=0))


def test_anchor_head_trains_with_the_atss_assigner():
    """The head passes num_level_priors (and valid_mask) to whichever assigner its config
    names: its targets are ATSS's positives."""
    head = AnchorHead(
        num_classes=2, in_channels=4,
        anchor_generator=dict(type="AnchorGenerator", scales=[4], ratios=[1.0], strides=[8, 16]),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True),
        train_cfg=dict(assigner=dict(type="ATSSAssigner", topk=3), allowed_border=-1),
    )  # fmt: skip
    feats = [torch.randn(1, 4, 8, 8, requires_grad=True), torch.randn(1, 4, 4, 4)]
    cls_scores, bbox_preds = head(feats)
    gt = InstanceData(bboxes=torch.tensor([[10.0, 12, 40, 44]]), labels=torch.tensor([1]))
    meta = dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3))
    anchors, featmap_sizes = head._anchors(cls_scores)
    targets = head.get_targets(anchors, featmap_sizes, [gt], [meta])
    direct = ATSSAssigner(topk=3).assign(
        InstanceData(priors=anchors), gt, num_level_priors=[64, 16]
    )
    positives = targets.anchor_inds[targets.labels < 2]
    assert positives.numel() > 0
    assert torch.equal(positives, torch.nonzero(direct.gt_inds > 0).squeeze(1))
    assert (targets.labels[targets.labels < 2] == 1).all()
    losses = head.loss(cls_scores, bbox_preds, [gt], [meta])
    sum(losses.values()).backward()
    assert feats[0].grad.abs().sum() > 0


def test_dense_assigners_make_no_host_sync():
    """On the meta device (shapes, no data) every data-dependent step (``.item()``,
    ``nonzero``, a tensor's truth value) raises: the assigners of the training step run
    there, so they wait on no device."""
    meta = dict(device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.nonzero(torch.empty(3, **meta) > 0)
    candidates = InstanceData(priors=torch.empty(100, 4, **meta))
    truth = InstanceData(
        bboxes=torch.empty(3, 4, **meta), labels=torch.empty(3, dtype=torch.long, **meta)
    )
    crowd = InstanceData(bboxes=torch.empty(2, 4, **meta))
    valid = torch.empty(100, dtype=torch.bool, **meta)
    for assigner in (
        MaxIoUAssigner(0.5, 0.4, ignore_iof_thr=0.5),
        ATSSAssigner(ignore_iof_thr=0.5),
    ):
        result = assigner.assign(
            candidates, truth, crowd, valid_mask=valid, num_level_priors=[60, 40]
        )
        assert result.gt_inds.shape == result.labels.shape == result.max_overlaps.shape == (100,)
        assert result.iou_targets(torch.empty(100, 4, **meta), truth.bboxes).shape == (100,)


# --------------------------------------------------------------------------- costs
def test_classification_cost_is_minus_the_softmax_probability():
    scores = torch.log(torch.tensor([[1.0, 2.0, 5.0], [3.0, 3.0, 2.0]]))  # probs /8
    labels = InstanceData(bboxes=torch.zeros(2, 4), labels=torch.tensor([2, 0]))
    cost = ClassificationCost(weight=2.0)(InstanceData(scores=scores), labels)
    torch.testing.assert_close(cost, torch.tensor([[-1.25, -0.25], [-0.5, -0.75]]))


def test_focal_loss_cost_hand_computed():
    """At q = 0.5 (logit 0): 0.25 * 0.25 * ln 2 - 0.75 * 0.25 * ln 2; at q = 0.75 (logit
    ln 3): 0.25 * 0.0625 * -ln 0.75 - 0.75 * 0.5625 * -ln 0.25."""
    scores = torch.tensor([[0.0, math.log(3.0)]])
    gt = InstanceData(bboxes=torch.zeros(2, 4), labels=torch.tensor([0, 1]))
    cost = FocalLossCost(weight=3.0)(InstanceData(scores=scores), gt)
    at_half = 0.0625 * math.log(2) - 0.1875 * math.log(2)
    at_three_quarters = -0.015625 * math.log(0.75) + 0.421875 * math.log(0.25)
    torch.testing.assert_close(cost, 3.0 * torch.tensor([[at_half, at_three_quarters]]))
    other = FocalLossCost(alpha=0.5, gamma=1.0)(InstanceData(scores=scores[:, :1]), gt[:1])
    torch.testing.assert_close(other, torch.tensor([[0.25 * math.log(2) - 0.25 * math.log(2)]]))


def test_bbox_l1_cost_on_normalised_boxes_in_both_formats():
    """Image 200 wide, 100 high: [0, 0, 100, 50] -> [0, 0, .5, .5], [20, 10, 120, 60] ->
    [.1, .1, .6, .6]: L1 0.4 in xyxy; centres .25 and .35, same sizes: 0.2 in cxcywh."""
    pred = InstanceData(bboxes=torch.tensor([[0.0, 0, 100, 50]]))
    gt = gts([20.0, 10, 120, 60])
    meta = dict(img_shape=(100, 200, 3))
    torch.testing.assert_close(BBoxL1Cost(weight=5.0)(pred, gt, meta), torch.tensor([[2.0]]))
    cxcywh = BBoxL1Cost(box_format="cxcywh")(pred, gt, meta)
    torch.testing.assert_close(cxcywh, torch.tensor([[0.2]]))
    with pytest.raises(ValueError, match="img_shape"):
        BBoxL1Cost()(pred, gt)
    with pytest.raises(ValueError, match="cxcywh"):
        BBoxL1Cost(box_format="xywh")


def test_iou_cost_is_minus_iou_or_giou():
    pred = InstanceData(bboxes=torch.tensor([[0.0, 0, 10, 10]]))
    two = gts([[5.0, 0, 15, 10], [20.0, 0, 30, 10]])
    # IoU 50/150; disjoint: IoU 0, GIoU 0 - (300 - 200) / 300
    torch.testing.assert_close(IoUCost(iou_mode="iou")(pred, two), torch.tensor([[-1 / 3, 0.0]]))
    giou = IoUCost(weight=2.0)(pred, two)
    torch.testing.assert_close(giou, 2.0 * torch.tensor([[-1 / 3, 1 / 3]]))
    with pytest.raises(ValueError, match="iou_mode"):
        IoUCost(iou_mode="iof")


# ------------------------------------------------------------------------- Hungarian
class FixedCost(BaseMatchCost):
    """A given (P, G) cost matrix, whatever the instances."""

    def __init__(self, matrix, weight=1.0):
        super().__init__(weight)
        self.matrix = torch.tensor(matrix)

    def cost(self, pred_instances, gt_instances, img_meta=None):
        return self.matrix


# gt 0 wants p0 most, but p0 is gt 1's only good prediction: matching gts one by one
# (g0 -> p0, g1 -> p2, g2 -> p3: 8.5) loses to g0 -> p3, g1 -> p0, g2 -> p2 (4.5)
COSTS = [
    [1.0, 1.2, 9.0],
    [9.0, 9.0, 9.0],
    [9.0, 5.0, 2.0],
    [1.3, 9.0, 2.5],
    [9.5, 9.5, 9.5],
]


def brute_force_matching(cost):
    """{gt: prediction} of the least total cost over every injective map of gts."""
    num_preds, num_gts = cost.shape
    best = min(
        itertools.permutations(range(num_preds), num_gts),
        key=lambda preds: sum(cost[p, g].item() for g, p in enumerate(preds)),
    )
    return dict(enumerate(best))


def test_hungarian_finds_the_least_total_cost():
    assert brute_force_matching(torch.tensor(COSTS)) == {0: 3, 1: 0, 2: 2}
    assigner = HungarianAssigner(match_costs=dict(type=FixedCost, matrix=COSTS))
    preds = InstanceData(scores=torch.zeros(5, 3))
    result = assigner.assign(preds, gts(torch.zeros(3, 4), [10, 11, 12]))
    assert result.gt_inds.tolist() == [2, 0, 3, 1, 0]
    assert result.labels.tolist() == [11, -1, 12, 10, -1]
    assert result.num_gts == 3
    # without p3 (outside valid_mask, matched to no gt): g0 -> p0, g1 -> p1, g2 -> p2 (12)
    valid = torch.tensor([True, True, True, False, True])
    masked = assigner.assign(preds, gts(torch.zeros(3, 4)), valid_mask=valid)
    expected = brute_force_matching(torch.tensor(COSTS)[[0, 1, 2, 4]])
    inds = [0, 1, 2, 4]
    assert {g: inds[p] for g, p in expected.items()} == {0: 0, 1: 1, 2: 2}
    assert masked.gt_inds.tolist() == [1, 2, 3, -1, 0]


def test_hungarian_with_registered_costs_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    match_costs = [
        dict(type="FocalLossCost", weight=2.0),
        dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
        dict(type="IoUCost", iou_mode="giou", weight=2.0),
    ]
    assigner = build_assigner(dict(type="HungarianAssigner", match_costs=match_costs))
    meta = dict(img_shape=(100, 120, 3))
    for _ in range(3):
        preds = InstanceData(
            bboxes=random_boxes(5, g), scores=torch.randn(5, 4, generator=g, requires_grad=True)
        )
        truth = InstanceData(
            bboxes=random_boxes(3, g), labels=torch.randint(0, 4, (3,), generator=g)
        )
        result = assigner.assign(preds, truth, img_meta=meta)
        costs = [build_from_cfg(c, MATCH_COSTS) for c in match_costs]
        total = sum(c(preds, truth, meta) for c in costs).detach()
        matching = brute_force_matching(total)
        expected = torch.zeros(5, dtype=torch.long)
        for gt_index, pred_index in matching.items():
            expected[pred_index] = gt_index + 1
        assert torch.equal(result.gt_inds, expected)
        matched = expected > 0
        ious = bbox_overlaps(preds.bboxes[matched], truth.bboxes[expected[matched] - 1],
                             is_aligned=True)  # fmt: skip
        torch.testing.assert_close(result.max_overlaps[matched], ious)
        assert (result.max_overlaps[~matched] == 0).all()
        assert not result.max_overlaps.requires_grad


def test_hungarian_empty_cases_and_errors():
    assigner = HungarianAssigner([dict(type="ClassificationCost")])
    preds = InstanceData(scores=torch.randn(4, 3))
    no_gts = assigner.assign(preds, gts(torch.zeros(0, 4)))
    assert no_gts.gt_inds.tolist() == [0] * 4 and no_gts.labels.tolist() == [-1] * 4
    no_preds = assigner.assign(InstanceData(scores=torch.zeros(0, 3)), gts([0.0, 0, 1, 1]))
    assert no_preds.gt_inds.shape == (0,) and no_preds.num_gts == 1
    more_gts = assigner.assign(preds[:2], gts(torch.zeros(3, 4), [0, 1, 2]))
    assert sorted(more_gts.gt_inds.tolist())[0] > 0  # both predictions matched
    with pytest.raises(ValueError, match="at least one"):
        HungarianAssigner([])
    nan = InstanceData(scores=torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        assigner.assign(nan, gts([0.0, 0, 1, 1], [0]))


# ---------------------------------------------------------------------- soft targets
def test_iou_targets_of_the_positives_predicted_boxes():
    result = AssignResult(2, torch.tensor([1, 0, -1, 2]), torch.zeros(4))
    pred = torch.tensor(
        [[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10], [5.0, 0, 15, 10]],
        requires_grad=True,
    )
    gt_boxes = torch.tensor([[0.0, 0, 10, 5], [0.0, 0, 10, 10]])
    targets = result.iou_targets(pred, gt_boxes)
    # positive 0: 50/100 with gt 0; positive 3: 50/150 with gt 1; the others 0
    torch.testing.assert_close(targets, torch.tensor([0.5, 0.0, 0.0, 1 / 3]))
    assert not targets.requires_grad
    empty = AssignResult(0, torch.zeros(4, dtype=torch.long), torch.zeros(4))
    assert empty.iou_targets(pred, torch.zeros(0, 4)).tolist() == [0.0] * 4
