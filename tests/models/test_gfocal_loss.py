"""GFL's losses and its Integral against hand-computed values: the quality focal loss of a
2 x 3 case, the distribution focal loss of a target between two bins, the expectation of a
one-hot and of a uniform distribution; finite gradients at extreme logits."""

import math

import pytest
import torch

from mmdet_like.models.dense_heads import Integral
from mmdet_like.models.losses import (
    DistributionFocalLoss,
    QualityFocalLoss,
    sigmoid_focal_loss,
)
from mmdet_like.registry import LOSSES, build_from_cfg


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


LOGITS = [[0.2, -1.0, 0.5], [1.5, 0.3, -0.7]]


def test_quality_focal_loss_equals_the_formula_on_a_2x3_case():
    # row 0: a positive of class 1 with IoU quality 0.6; row 1: background (label 3 = C)
    pred = torch.tensor(LOGITS, dtype=torch.float64)
    labels, scores = torch.tensor([1, 3]), torch.tensor([0.6, 0.0], dtype=torch.float64)
    expected = []
    for i, row in enumerate(LOGITS):
        total = 0.0
        for c, x in enumerate(row):
            y = 0.6 if (i, c) == (0, 1) else 0.0  # |y - sigma|^beta * BCE(sigma, y), beta 2
            total += abs(y - sigmoid(x)) ** 2 * bce(sigmoid(x), y)
        expected.append(total)
    loss = build_from_cfg(dict(type="QualityFocalLoss", beta=2.0), LOSSES)
    per_row = loss(pred, (labels, scores), reduction_override="none")
    torch.testing.assert_close(per_row, torch.tensor(expected, dtype=torch.float64))
    weighted = loss(pred, (labels, scores), weight=torch.tensor([1.0, 0.5]), avg_factor=2.0)
    assert weighted.item() == pytest.approx((expected[0] + 0.5 * expected[1]) / 2, rel=1e-6)


def test_quality_focal_loss_with_hard_targets_is_the_focal_loss_without_alpha():
    pred = torch.tensor(LOGITS)
    labels = torch.tensor([2, 0])
    onehot = torch.nn.functional.one_hot(labels, 3).float()
    qfl = QualityFocalLoss(beta=2.0)(pred, (labels, torch.ones(2)), reduction_override="none")
    torch.testing.assert_close(qfl, sigmoid_focal_loss(pred, onehot, 2.0, alpha=-1).sum(1))


def test_distribution_focal_loss_between_two_bins():
    # 2.3: bin 2 with weight 0.7, bin 3 with weight 0.3
    logits = [0.1, 0.4, 1.2, 0.9, -0.3]
    log_norm = math.log(sum(math.exp(v) for v in logits))
    ce = [log_norm - v for v in logits]
    pred = torch.tensor([logits, [0.0] * 5], dtype=torch.float64)
    target = torch.tensor([2.3, 2.0], dtype=torch.float64)
    loss = DistributionFocalLoss()(pred, target, reduction_override="none")
    # an integer target is its own bin alone; uniform logits: log 5 whatever the target
    torch.testing.assert_close(
        loss, torch.tensor([0.7 * ce[2] + 0.3 * ce[3], math.log(5)], dtype=torch.float64)
    )
    scaled = build_from_cfg(dict(type="DistributionFocalLoss", loss_weight=0.25), LOSSES)
    assert scaled(pred[:1], target[:1]).item() == pytest.approx(0.25 * loss[0].item())


def test_integral_of_one_hot_and_uniform_distributions():
    integral = Integral(reg_max=16)
    assert integral.project.tolist() == list(range(17))
    one_hot = torch.full((2, 3, 4, 17), -1e4)
    for side, bin_ in enumerate([0, 5, 11, 16]):
        one_hot[..., side, bin_] = 0.0
    distances = integral(one_hot.flatten(-2))  # (2, 3, 68) -> (2, 3, 4)
    assert distances.shape == (2, 3, 4)
    torch.testing.assert_close(distances, torch.tensor([0.0, 5, 11, 16]).expand(2, 3, 4))
    uniform = integral(torch.zeros(7, 68))
    torch.testing.assert_close(uniform, torch.full((7, 4), 8.0))  # the middle of 0..16


def test_gradients_are_finite_at_extreme_logits():
    pred = torch.tensor([[60.0, -60.0, 0.0], [-80.0, 80.0, 3.0]], requires_grad=True)
    labels, scores = torch.tensor([0, 1]), torch.tensor([0.0, 1.0])
    QualityFocalLoss()(pred, (labels, scores)).backward()
    assert torch.isfinite(pred.grad).all()
    bins = torch.tensor([[90.0, -90.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    DistributionFocalLoss()(bins, torch.tensor([2.9, 0.0])).backward()
    assert torch.isfinite(bins.grad).all() and bins.grad.abs().sum() > 0


def test_background_only_rows_still_train_the_classifier():
    pred = torch.tensor(LOGITS, requires_grad=True)
    loss = QualityFocalLoss()(pred, (torch.tensor([3, 3]), torch.zeros(2)), avg_factor=1.0)
    loss.backward()
    assert loss.item() > 0 and (pred.grad > 0).all()  # every score pushed down


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="labels and scores"):
        QualityFocalLoss()(torch.zeros(2, 3), (torch.zeros(3).long(), torch.zeros(3)))
    with pytest.raises(ValueError, match="DistributionFocalLoss"):
        DistributionFocalLoss()(torch.zeros(2, 5), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="sigmoid"):
        QualityFocalLoss(use_sigmoid=False)
