"""DeltaXYWHBBoxCoder and DistancePointBBoxCoder: hand values, round trips, clamping and
clipping."""

import math

import pytest
import torch

from mmdet_like.models import build_bbox_coder


def random_boxes(num, generator, size=100.0):
    xy = torch.rand(num, 2, generator=generator) * size
    wh = torch.rand(num, 2, generator=generator) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_encode_by_hand():
    coder = build_bbox_coder(dict(type="DeltaXYWHBBoxCoder"))
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gts = torch.tensor([[5.0, 0.0, 25.0, 10.0]])
    # centres (5, 10) -> (15, 5); sizes (10, 20) -> (20, 10)
    expected = torch.tensor([[1.0, -0.25, math.log(2), math.log(0.5)]])
    torch.testing.assert_close(coder.encode(anchors, gts), expected)
    normalised = build_bbox_coder(
        dict(type="DeltaXYWHBBoxCoder", target_means=[0.1] * 4, target_stds=[0.1, 0.1, 0.2, 0.2])
    )
    stds = torch.tensor([0.1, 0.1, 0.2, 0.2])
    torch.testing.assert_close(normalised.encode(anchors, gts), (expected - 0.1) / stds)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_round_trip(dtype):
    g = torch.Generator().manual_seed(0)
    anchors, gts = random_boxes(50, g).to(dtype), random_boxes(50, g).to(dtype)
    coder = build_bbox_coder(
        dict(type="DeltaXYWHBBoxCoder", target_means=[0, 0, 0, 0], target_stds=[0.1, 0.1, 0.2, 0.2])
    )
    deltas = coder.encode(anchors, gts)
    decoded = coder.decode(anchors, deltas)
    assert deltas.dtype == decoded.dtype == dtype  # float64 stays float64
    # centres and sizes (up to ~150 px) go through log and exp: a few ulps of the largest
    # coordinate (float32: measured 1.5e-5 at 142 px, 0.9 ulp, under ATen AVX2 and default
    # and oneDNN SSE41; ATen's vectorised and scalar exp and log differ in the last bit)
    atol = 8 * torch.finfo(dtype).eps * gts.abs().max().item()
    torch.testing.assert_close(decoded, gts, rtol=0, atol=atol)


def test_decode_clamps_size_and_clips():
    coder = build_bbox_coder(dict(type="DeltaXYWHBBoxCoder", wh_ratio_clip=16 / 1000))
    anchors = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    boxes = coder.decode(anchors, torch.tensor([[0.0, 0.0, 100.0, 0.0]]))
    max_ratio = abs(math.log(16 / 1000))
    torch.testing.assert_close(boxes[0, 2] - boxes[0, 0], torch.tensor(10 * math.exp(max_ratio)))
    clipped = coder.decode(anchors, torch.tensor([[0.0, 0.0, 100.0, 0.0]]), max_shape=(30, 40))
    assert clipped[0].tolist() == [0.0, 10.0, 40.0, 20.0]


def test_decode_many_deltas_per_box_and_batches():
    g = torch.Generator().manual_seed(1)
    coder = build_bbox_coder(dict(type="DeltaXYWHBBoxCoder"))
    rois = random_boxes(6, g)
    deltas = torch.randn(6, 3 * 4, generator=g) * 0.3
    per_class = coder.decode(rois, deltas)
    assert per_class.shape == (6, 12)
    for k in range(3):
        torch.testing.assert_close(
            per_class[:, 4 * k : 4 * k + 4], coder.decode(rois, deltas[:, 4 * k : 4 * k + 4])
        )
    batched = coder.decode(rois[None].expand(2, -1, -1), deltas[None, :, :4].expand(2, -1, -1))
    torch.testing.assert_close(batched[1], coder.decode(rois, deltas[:, :4]))


def test_distance_point_encode_and_decode_by_hand():
    coder = build_bbox_coder(dict(type="DistancePointBBoxCoder"))
    points = torch.tensor([[20.0, 30.0], [5.0, 5.0]])
    boxes = torch.tensor([[10.0, 12.0, 50.0, 40.0], [10.0, 0.0, 30.0, 20.0]])
    # (px - x1, py - y1, x2 - px, y2 - py); the second point lies left of its box
    expected = torch.tensor([[10.0, 18.0, 30.0, 10.0], [-5.0, 5.0, 25.0, 15.0]])
    torch.testing.assert_close(coder.encode(points, boxes), expected, rtol=0, atol=0)
    torch.testing.assert_close(coder.decode(points, expected), boxes, rtol=0, atol=0)
    # clamped to [0, max_dis - eps]
    clamped = coder.encode(points, boxes, max_dis=20.0, eps=0.5)
    assert clamped.tolist() == [[10.0, 18.0, 19.5, 10.0], [0.0, 5.0, 19.5, 15.0]]


def test_distance_point_round_trip_broadcast_and_extra_point_columns():
    g = torch.Generator().manual_seed(2)
    coder = build_bbox_coder(dict(type="DistancePointBBoxCoder"))
    boxes = random_boxes(5, g)
    points = torch.rand(7, 2, generator=g) * 100
    with_stride = torch.cat([points, torch.full((7, 2), 8.0)], dim=1)  # (x, y, sw, sh)
    distances = coder.encode(with_stride[:, None, :], boxes)  # every point to every box
    assert distances.shape == (7, 5, 4)
    torch.testing.assert_close(distances[3, 2], coder.encode(points[3], boxes[2]))
    decoded = coder.decode(with_stride[:, None, :], distances)
    torch.testing.assert_close(decoded, boxes[None].expand(7, -1, -1), rtol=0, atol=1e-4)


def test_distance_point_decode_clips_to_max_shape_unless_clip_border_is_off():
    points = torch.tensor([[10.0, 10.0]])
    distances = torch.tensor([[15.0, 5.0, 100.0, 100.0]])
    clipped = build_bbox_coder(dict(type="DistancePointBBoxCoder")).decode(
        points, distances, max_shape=(40, 60)
    )
    assert clipped.tolist() == [[0.0, 5.0, 60.0, 40.0]]
    unclipped = build_bbox_coder(dict(type="DistancePointBBoxCoder", clip_border=False))
    assert unclipped.decode(points, distances, max_shape=(40, 60)).tolist() == [
        [-5.0, 5.0, 110.0, 110.0]
    ]
