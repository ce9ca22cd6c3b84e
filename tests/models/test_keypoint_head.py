"""KeypointRCNNHead: its layers, heatmap targets, loss and decode against torchvision's
Keypoint R-CNN functions (``keypoints_to_heatmap``, ``keypointrcnn_loss``,
``heatmaps_to_keypoints``, ``KeypointRCNNHeads`` + ``KeypointRCNNPredictor``)."""

import pytest
import torch

from mmdet_like.models.roi_heads.keypoint_head import (
    KeypointRCNNHead,
    heatmaps_to_keypoints,
    keypoint_heatmap_targets,
)
from mmdet_like.registry import HEADS, build_from_cfg

roi_heads = pytest.importorskip("torchvision.models.detection.roi_heads")
keypoint_rcnn = pytest.importorskip("torchvision.models.detection.keypoint_rcnn")

K = 5


def _rois_and_keypoints(seed=0, n=12):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 80
    wh = torch.rand(n, 2, generator=g) * 60 + 4
    rois = torch.cat([xy, xy + wh], 1)
    # keypoints around the boxes, some outside, some unlabelled, some on the far edges
    points = rois[:, None, :2] + (torch.rand(n, K, 2, generator=g) * 1.4 - 0.2) * wh[:, None]
    visibility = torch.randint(0, 3, (n, K), generator=g).float()
    keypoints = torch.cat([points, visibility[..., None]], 2)
    keypoints[0, 0, :2] = rois[0, 2:]  # exactly on the right and bottom edges
    keypoints[0, 0, 2] = 2
    return rois, keypoints


def test_targets_equal_torchvision():
    rois, keypoints = _rois_and_keypoints()
    cells, valid = keypoint_heatmap_targets(keypoints, rois, 56)
    want_cells, want_valid = roi_heads.keypoints_to_heatmap(keypoints, rois, 56)
    assert torch.equal(valid, want_valid.bool())
    assert torch.equal(cells, want_cells)
    assert valid.any() and not valid.all()
    assert cells[0, 0] == 56 * 56 - 1  # the edge keypoint: last cell


def test_layers_and_loss_equal_torchvision():
    torch.manual_seed(0)
    head = build_from_cfg(
        dict(type="KeypointRCNNHead", num_keypoints=K, in_channels=8, num_convs=2,
             conv_out_channels=16), HEADS,
    )  # fmt: skip
    theirs_convs = keypoint_rcnn.KeypointRCNNHeads(8, (16, 16))
    theirs_predictor = keypoint_rcnn.KeypointRCNNPredictor(16, K)
    with torch.no_grad():
        for ours, tv in zip(
            [m for m in head.convs if isinstance(m, torch.nn.Conv2d)],
            [m for m in theirs_convs.modules() if isinstance(m, torch.nn.Conv2d)],
            strict=True,
        ):
            tv.weight.copy_(ours.weight)
            tv.bias.copy_(ours.bias)
        theirs_predictor.kps_score_lowres.weight.copy_(head.deconv.weight)
        theirs_predictor.kps_score_lowres.bias.copy_(head.deconv.bias.normal_())
    features = torch.randn(12, 8, 14, 14, requires_grad=True)
    heatmaps = head(features)
    assert heatmaps.shape == (12, K, 56, 56)
    torch.testing.assert_close(heatmaps, theirs_predictor(theirs_convs(features)))

    rois, keypoints = _rois_and_keypoints(1)
    cells, valid = keypoint_heatmap_targets(keypoints, rois, 56)
    loss = head.loss(heatmaps, cells, valid)["loss_keypoint"]
    want = roi_heads.keypointrcnn_loss(heatmaps, [rois], [keypoints], [torch.arange(len(rois))])
    torch.testing.assert_close(loss, want)
    (grad,) = torch.autograd.grad(loss, features)
    assert grad.abs().sum() > 0
    # a constant normaliser: the sum over valid keypoints / (c * images)
    constant = KeypointRCNNHead(K, 8, 2, 16, loss_normalizer=10.0)
    summed = head.loss(heatmaps, cells, valid)["loss_keypoint"] * valid.sum()
    torch.testing.assert_close(
        constant.loss(heatmaps, cells, valid, num_images=2)["loss_keypoint"], summed / 20
    )
    # no valid keypoint: zero, still differentiable
    none = head.loss(heatmaps, cells, torch.zeros_like(valid))["loss_keypoint"]
    assert none.item() == 0 and none.requires_grad
    with pytest.raises(ValueError, match="loss_normalizer"):
        KeypointRCNNHead(K, loss_normalizer="all")


def test_decode_equals_torchvision():
    g = torch.Generator().manual_seed(3)
    heatmaps = torch.randn(7, K, 56, 56, generator=g) * 3
    boxes = torch.tensor(
        [[10.0, 20, 60.5, 90.2], [0, 0, 0.5, 0.4], [5, 5, 130, 41], [3.3, 4.4, 9.9, 100.1],
         [50, 50, 51, 53], [0, 0, 56, 56], [12.25, 7.75, 40.5, 33.1]]
    )  # fmt: skip
    points, scores = heatmaps_to_keypoints(heatmaps, boxes)
    want_points, want_scores = roi_heads.heatmaps_to_keypoints(heatmaps, boxes)
    torch.testing.assert_close(points, want_points[..., :2])
    torch.testing.assert_close(scores, want_scores)
    empty_points, empty_scores = heatmaps_to_keypoints(heatmaps[:0], boxes[:0])
    assert empty_points.shape == (0, K, 2) and empty_scores.shape == (0, K)
