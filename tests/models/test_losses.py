"""Losses against torch.nn.functional, with weights, avg_factor and reductions."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from mmdet_like.models import build_loss
from mmdet_like.registry import BuildError


@pytest.fixture
def g():
    return torch.Generator().manual_seed(0)


def test_softmax_cross_entropy(g):
    logits, labels = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    loss = build_loss(dict(type="CrossEntropyLoss", loss_weight=2.0))
    torch.testing.assert_close(loss(logits, labels), 2 * F.cross_entropy(logits, labels))
    weight = torch.rand(8, generator=g)
    elementwise = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(
        loss(logits, labels, weight, avg_factor=3.0), 2 * (elementwise * weight).sum() / 3
    )
    torch.testing.assert_close(loss(logits, labels, reduction_override="none"), 2 * elementwise)
    torch.testing.assert_close(
        loss(logits, labels, reduction_override="sum"), 2 * elementwise.sum()
    )


def test_softmax_cross_entropy_class_weight(g):
    logits, labels = torch.randn(8, 3, generator=g), torch.randint(0, 3, (8,), generator=g)
    class_weight = [0.2, 1.0, 3.0]
    loss = build_loss(dict(type="CrossEntropyLoss", class_weight=class_weight, reduction="sum"))
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(class_weight), reduction="sum")
    torch.testing.assert_close(loss(logits, labels), expected)


def test_sigmoid_cross_entropy_with_index_labels(g):
    logits = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 3, 4, 2, 4, 1])  # 4 == num_classes: background
    weight = torch.tensor([1.0, 0.5, 1.0, 0.0, 1.0, 2.0])
    targets = torch.zeros(6, 4)
    targets[[0, 1, 3, 5], [0, 3, 2, 1]] = 1
    loss = build_loss(dict(type="CrossEntropyLoss", use_sigmoid=True))
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(loss(logits, labels), expected.mean())
    torch.testing.assert_close(
        loss(logits, labels, weight, avg_factor=5), (expected * weight[:, None]).sum() / 5
    )
    # (N, C) float targets directly, and the RPN case: (N,) logits with (N,) binary targets
    torch.testing.assert_close(loss(logits, targets), expected.mean())
    binary_logits, binary_targets = torch.randn(10, generator=g), torch.rand(10, generator=g)
    torch.testing.assert_close(
        loss(binary_logits, binary_targets),
        F.binary_cross_entropy_with_logits(binary_logits, binary_targets),
    )


def test_mask_cross_entropy(g):
    pred = torch.randn(3, 5, 7, 7, generator=g)
    target = (torch.rand(3, 7, 7, generator=g) > 0.5).float()
    labels = torch.tensor([4, 0, 4])
    loss = build_loss(dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.5))
    chosen = pred[[0, 1, 2], [4, 0, 4]]
    expected = F.binary_cross_entropy_with_logits(chosen, target)
    torch.testing.assert_close(loss(pred, target, mask_label=labels), 1.5 * expected)
    with pytest.raises(ValueError, match="mask_label"):
        loss(pred, target)
    with pytest.raises(BuildError, match="exclusive"):
        build_loss(dict(type="CrossEntropyLoss", use_mask=True, use_sigmoid=True))


@pytest.mark.parametrize("beta", [1.0, 1 / 9])
def test_smooth_l1(g, beta):
    pred, target = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    weight = (torch.rand(10, 4, generator=g) > 0.3).float()
    loss = build_loss(dict(type="SmoothL1Loss", beta=beta, loss_weight=0.5))
    elementwise = F.smooth_l1_loss(pred, target, beta=beta, reduction="none")
    torch.testing.assert_close(loss(pred, target), 0.5 * elementwise.mean())
    torch.testing.assert_close(
        loss(pred, target, weight, avg_factor=7), 0.5 * (elementwise * weight).sum() / 7
    )
    with pytest.raises(ValueError, match="differ"):
        loss(pred, target[:3])


def test_l1(g):
    pred, target = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    loss = build_loss(dict(type="L1Loss", reduction="sum"))
    torch.testing.assert_close(loss(pred, target), F.l1_loss(pred, target, reduction="sum"))
    with pytest.raises(ValueError, match="avg_factor"):
        loss(pred, target, avg_factor=2.0)


def test_giou(g):
    xy = torch.rand(12, 2, generator=g) * 50
    pred = torch.cat([xy, xy + torch.rand(12, 2, generator=g) * 20 + 1], 1)
    xy = torch.rand(12, 2, generator=g) * 50
    target = torch.cat([xy, xy + torch.rand(12, 2, generator=g) * 20 + 1], 1)
    expected = torchvision.ops.generalized_box_iou_loss(pred, target, reduction="none")
    loss = build_loss(dict(type="GIoULoss", loss_weight=2.0))
    torch.testing.assert_close(loss(pred, target), 2 * expected.mean())
    weight = torch.rand(12, generator=g)
    torch.testing.assert_close(
        loss(pred, target, weight[:, None].expand(-1, 4), avg_factor=4.0),
        2 * (expected * weight).sum() / 4,
    )
    # differentiable, and zero at a perfect match
    pred.requires_grad_(True)
    loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all()
    assert loss(target, target).abs() < 1e-6


def test_reduction_is_checked():
    with pytest.raises(BuildError, match="reduction"):
        build_loss(dict(type="L1Loss", reduction="avg"))
