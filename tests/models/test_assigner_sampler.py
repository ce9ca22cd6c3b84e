"""MaxIoUAssigner on hand-made cases, and RandomSampler counts."""

import pytest
import torch

from mmdet_like.models import build_assigner, build_sampler
from mmdet_like.models.task_modules import AssignResult, MaxIoUAssigner, RandomSampler
from mmdet_like.structures import InstanceData

# overlaps (G=2, N=6) given directly to assign_wrt_overlaps
OVERLAPS = torch.tensor(
    [
        [0.80, 0.45, 0.20, 0.00, 0.35, 0.10],
        [0.10, 0.60, 0.05, 0.00, 0.35, 0.65],
    ]
)


def test_thresholds():
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.3, match_low_quality=False)
    result = assigner.assign_wrt_overlaps(OVERLAPS, gt_labels=torch.tensor([3, 7]))
    # 0.8 -> gt0, 0.6 -> gt1, 0.2 neg, 0 neg, 0.35 ignored (between thresholds), 0.65 -> gt1
    assert result.gt_inds.tolist() == [1, 2, 0, 0, -1, 2]
    assert result.labels.tolist() == [3, 7, -1, -1, -1, 7]
    torch.testing.assert_close(result.max_overlaps, OVERLAPS.max(0).values)


def test_neg_iou_range():
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=(0.1, 0.3), match_low_quality=False)
    result = assigner.assign_wrt_overlaps(OVERLAPS)
    assert result.gt_inds.tolist() == [1, 2, 0, -1, -1, 2]
    assert result.labels is None


def test_low_quality_matching_and_min_pos_iou():
    overlaps = torch.tensor(
        [
            [0.40, 0.40, 0.10, 0.00],  # best 0.4 reached twice
            [0.00, 0.20, 0.25, 0.00],  # best 0.25 only
        ]
    )
    base = dict(pos_iou_thr=0.5, neg_iou_thr=0.2)  # candidate 2 (0.25) is in the ignore band
    everywhere = MaxIoUAssigner(min_pos_iou=0.3, gt_max_assign_all=True, **base)
    assert everywhere.assign_wrt_overlaps(overlaps).gt_inds.tolist() == [1, 1, -1, 0]
    first_only = MaxIoUAssigner(min_pos_iou=0.3, gt_max_assign_all=False, **base)
    assert first_only.assign_wrt_overlaps(overlaps).gt_inds.tolist() == [1, -1, -1, 0]
    lower = MaxIoUAssigner(min_pos_iou=0.2, gt_max_assign_all=True, **base)
    # gt1's best (0.25 at candidate 2) now qualifies; candidate 1 stays with gt0 (0.4 >= 0.2)
    assert lower.assign_wrt_overlaps(overlaps).gt_inds.tolist() == [1, 1, 2, 0]
    off = MaxIoUAssigner(match_low_quality=False, **base)
    assert off.assign_wrt_overlaps(overlaps).gt_inds.tolist() == [-1, -1, -1, 0]


def test_low_quality_later_gt_wins_shared_candidate():
    overlaps = torch.tensor([[0.4, 0.1], [0.4, 0.0]])
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.3)
    assert assigner.assign_wrt_overlaps(overlaps).gt_inds.tolist() == [2, 0]


def test_low_quality_match_to_the_candidates_own_best_gt_as_torchvision():
    """torchvision's Matcher (allow_low_quality_matches): a candidate that is some gt's best
    keeps its own best gt. Candidate 0 is gt0's best (0.3) but overlaps gt1 more (0.4)."""
    matcher = pytest.importorskip("torchvision.models.detection._utils").Matcher(0.5, 0.4, True)
    overlaps = torch.tensor([[0.30, 0.20, 0.10], [0.40, 0.45, 0.60]])
    claiming = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0)
    best = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0, low_quality_gt="best")
    # candidate 1's best IoU (0.45) is between the thresholds: ignored (-1)
    assert claiming.assign_wrt_overlaps(overlaps).gt_inds.tolist() == [1, -1, 2]
    assert best.assign_wrt_overlaps(overlaps).gt_inds.tolist() == [2, -1, 2]
    # torchvision: -1 below the low threshold (our 0), -2 between (our -1), else the gt index
    expected = {-1: 0, -2: -1}
    assert [expected.get(m, m + 1) for m in matcher(overlaps).tolist()] == [2, -1, 2]
    with pytest.raises(ValueError, match="low_quality_gt"):
        MaxIoUAssigner(0.5, 0.4, low_quality_gt="first")


def test_zero_overlap_gt_never_claims():
    overlaps = torch.tensor([[0.0, 0.0], [0.1, 0.7]])
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.0)
    assert assigner.assign_wrt_overlaps(overlaps).gt_inds.tolist() == [0, 2]


def test_assign_with_boxes_and_crowd_ignore():
    assigner = build_assigner(
        dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, ignore_iof_thr=0.5)
    )
    bboxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # exact match of gt0
            [100.0, 100.0, 110.0, 110.0],  # inside the crowd box -> ignored
            [50.0, 50.0, 60.0, 60.0],  # far from everything -> negative
            [195.0, 195.0, 205.0, 205.0],  # a quarter inside the crowd box -> negative
        ]
    )
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    crowd = torch.tensor([[90.0, 90.0, 200.0, 200.0]])
    result = assigner.assign(
        InstanceData(priors=bboxes),
        InstanceData(bboxes=gts, labels=torch.tensor([4])),
        InstanceData(bboxes=crowd),
    )
    assert result.gt_inds.tolist() == [1, -1, 0, 0]
    assert result.labels.tolist() == [4, -1, -1, -1]
    assert result.max_overlaps[1] == -1


def test_no_gt_all_negative_and_no_candidates():
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4)
    no_gts = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
    result = assigner.assign(InstanceData(priors=torch.rand(5, 4)), no_gts)
    assert result.gt_inds.tolist() == [0] * 5
    assert result.labels.tolist() == [-1] * 5
    assert result.num_gts == 0
    empty = assigner.assign(
        InstanceData(priors=torch.zeros(0, 4)),
        InstanceData(bboxes=torch.tensor([[0.0, 0.0, 5.0, 5.0]])),
    )
    assert empty.gt_inds.shape == (0,)


def make_assign_result(num_pos, num_neg, num_ignored, num_gts=3):
    gt_inds = torch.cat(
        [
            torch.arange(num_pos) % num_gts + 1,
            torch.zeros(num_neg, dtype=torch.long),
            torch.full((num_ignored,), -1),
        ]
    )
    perm = torch.randperm(gt_inds.numel(), generator=torch.Generator().manual_seed(0))
    gt_inds = gt_inds[perm]
    labels = torch.where(gt_inds > 0, gt_inds * 10, torch.full_like(gt_inds, -1))
    return AssignResult(num_gts, gt_inds, torch.rand(gt_inds.numel()), labels)


def boxes(num):
    return torch.arange(num * 4, dtype=torch.float32).view(num, 4)


def test_sampler_counts_and_indices():
    sampler = build_sampler(
        dict(type="RandomSampler", num=16, pos_fraction=0.25, add_gt_as_proposals=False)
    )
    assign = make_assign_result(num_pos=10, num_neg=30, num_ignored=5)
    result = sampler.sample(assign, boxes(45), boxes(3), torch.tensor([10, 20, 30]))
    assert result.pos_inds.numel() == 4 and result.neg_inds.numel() == 12
    assert (assign.gt_inds[result.pos_inds] > 0).all()
    assert (assign.gt_inds[result.neg_inds] == 0).all()
    assert result.pos_inds.unique().numel() == 4 and result.neg_inds.unique().numel() == 12
    torch.testing.assert_close(result.pos_bboxes, boxes(45)[result.pos_inds])
    torch.testing.assert_close(result.pos_gt_bboxes, boxes(3)[assign.gt_inds[result.pos_inds] - 1])
    assert result.pos_gt_labels.tolist() == (assign.gt_inds[result.pos_inds] * 10).tolist()
    assert result.bboxes.shape == (16, 4)


def test_sampler_few_positives_and_neg_pos_ub():
    assign = make_assign_result(num_pos=2, num_neg=100, num_ignored=0)
    filled = RandomSampler(num=32, pos_fraction=0.5, add_gt_as_proposals=False)
    result = filled.sample(assign, boxes(102), boxes(3))
    assert (result.pos_inds.numel(), result.neg_inds.numel()) == (2, 30)
    bounded = RandomSampler(num=32, pos_fraction=0.5, neg_pos_ub=3, add_gt_as_proposals=False)
    result = bounded.sample(assign, boxes(102), boxes(3))
    assert (result.pos_inds.numel(), result.neg_inds.numel()) == (2, 6)
    no_pos = make_assign_result(num_pos=0, num_neg=100, num_ignored=0)
    result = bounded.sample(no_pos, boxes(100), boxes(3))
    assert (result.pos_inds.numel(), result.neg_inds.numel()) == (0, 3)


def test_sampler_adds_gts_as_proposals():
    assign = make_assign_result(num_pos=0, num_neg=20, num_ignored=0)
    sampler = RandomSampler(num=8, pos_fraction=0.5, add_gt_as_proposals=True)
    gt_labels = torch.tensor([10, 20, 30])
    result = sampler.sample(assign, boxes(20) + 1000, boxes(3), gt_labels)
    assert result.pos_inds.numel() == 3 and result.neg_inds.numel() == 5
    assert result.pos_is_gt.tolist() == [1, 1, 1]
    assert sorted(result.pos_gt_labels.tolist()) == [10, 20, 30]
    torch.testing.assert_close(result.pos_bboxes, result.pos_gt_bboxes)
    assert (result.neg_bboxes >= 1000).all()


def test_sampler_is_uniform_over_candidates():
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 3, 5, 7]] = True
    g = torch.Generator().manual_seed(0)
    from mmdet_like.models.task_modules import random_subset

    counts = torch.zeros(10)
    for _ in range(400):
        counts[random_subset(mask, 2, g)] += 1
    assert counts[~mask].sum() == 0
    assert counts[mask].min() > 150 and counts[mask].max() < 250  # expectation 200


def test_sampler_config_errors():
    with pytest.raises(ValueError):
        RandomSampler(num=0, pos_fraction=0.5)


def reference_assign(overlaps, pos_thr, neg_thr, min_pos_iou, assign_all):
    """A plain loop over gts, as in the Faster R-CNN reference implementation."""
    max_overlaps, argmax = overlaps.max(0)
    gt_inds = torch.full((overlaps.size(1),), -1)
    gt_inds[(max_overlaps >= 0) & (max_overlaps < neg_thr)] = 0
    pos = max_overlaps >= pos_thr
    gt_inds[pos] = argmax[pos] + 1
    gt_max, gt_argmax = overlaps.max(1)
    for i in range(overlaps.size(0)):
        if gt_max[i] >= min_pos_iou and gt_max[i] > 0:
            if assign_all:
                gt_inds[overlaps[i] == gt_max[i]] = i + 1
            else:
                gt_inds[gt_argmax[i]] = i + 1
    return gt_inds


@pytest.mark.parametrize("assign_all", [True, False])
def test_matches_reference_loop_on_random_overlaps(assign_all):
    g = torch.Generator().manual_seed(0)
    # quantised so that ties (several candidates at a gt's best IoU) occur
    overlaps = (torch.rand(7, 300, generator=g) ** 3 * 20).round() / 20
    assigner = MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3, gt_max_assign_all=assign_all)
    expected = reference_assign(overlaps, 0.7, 0.3, 0.3, assign_all)
    assert torch.equal(assigner.assign_wrt_overlaps(overlaps).gt_inds, expected)
