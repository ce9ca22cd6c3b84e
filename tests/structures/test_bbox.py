"""Box math against torchvision.ops and hand-computed values."""

import numpy as np
import pytest
import torch
import torchvision

from mmdet_like.structures import (
    bbox2result,
    bbox2roi,
    bbox_cxcywh_to_xyxy,
    bbox_overlaps,
    bbox_xywh_to_xyxy,
    bbox_xyxy_to_cxcywh,
    bbox_xyxy_to_xywh,
    clip_bboxes,
    roi2bbox,
)


def random_boxes(num, generator, size=100.0):
    xy = torch.rand(num, 2, generator=generator) * size
    wh = torch.rand(num, 2, generator=generator) * size / 2 + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def test_iou_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    a, b = random_boxes(37, g), random_boxes(23, g)
    torch.testing.assert_close(bbox_overlaps(a, b), torchvision.ops.box_iou(a, b))


def test_giou_matches_torchvision():
    g = torch.Generator().manual_seed(1)
    a, b = random_boxes(19, g), random_boxes(11, g)
    expected = torchvision.ops.generalized_box_iou(a, b)
    torch.testing.assert_close(bbox_overlaps(a, b, mode="giou"), expected)
    torch.testing.assert_close(
        bbox_overlaps(a[:11], b, mode="giou", is_aligned=True), expected[:11].diagonal()
    )
    torch.testing.assert_close(
        bbox_overlaps(a[:11], b, is_aligned=True),
        torchvision.ops.box_iou(a[:11], b).diagonal(),
    )


def test_iof_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 25.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    torch.testing.assert_close(bbox_overlaps(a, b, mode="iof"), torch.tensor([[0.5, 0.0]]))
    torch.testing.assert_close(bbox_overlaps(b, a, mode="iof"), torch.tensor([[0.25], [0.0]]))


@pytest.mark.parametrize("mode", ["iou", "iof", "giou"])
def test_chunked_equals_unchunked(mode):
    g = torch.Generator().manual_seed(2)
    a, b = random_boxes(103, g), random_boxes(7, g)
    full = bbox_overlaps(a, b, mode=mode, chunk_pairs=10**9)
    chunked = bbox_overlaps(a, b, mode=mode, chunk_pairs=50)  # 7 rows per chunk
    assert torch.equal(full, chunked)


def test_large_overlaps_are_chunked_and_correct():
    # 200k anchors x 100 gts: the unchunked (N, M, 2) intermediates alone would be ~640 MB.
    g = torch.Generator().manual_seed(3)
    anchors, gts = random_boxes(200_000, g, 1000.0), random_boxes(100, g, 1000.0)
    ious = bbox_overlaps(gts, anchors)
    assert ious.shape == (100, 200_000)
    torch.testing.assert_close(ious[:, ::997], torchvision.ops.box_iou(gts, anchors[::997]))


def test_empty_inputs():
    assert bbox_overlaps(torch.zeros(0, 4), torch.zeros(5, 4)).shape == (0, 5)
    assert bbox_overlaps(torch.zeros(5, 4), torch.zeros(0, 4)).shape == (5, 0)
    with pytest.raises(ValueError, match="mode"):
        bbox_overlaps(torch.zeros(1, 4), torch.zeros(1, 4), mode="dice")


def test_format_round_trips():
    g = torch.Generator().manual_seed(4)
    boxes = random_boxes(10, g)
    torch.testing.assert_close(
        bbox_xyxy_to_cxcywh(boxes), torchvision.ops.box_convert(boxes, "xyxy", "cxcywh")
    )
    torch.testing.assert_close(
        bbox_xyxy_to_xywh(boxes), torchvision.ops.box_convert(boxes, "xyxy", "xywh")
    )
    torch.testing.assert_close(bbox_cxcywh_to_xyxy(bbox_xyxy_to_cxcywh(boxes)), boxes)
    torch.testing.assert_close(bbox_xywh_to_xyxy(bbox_xyxy_to_xywh(boxes)), boxes)


def test_clip():
    boxes = torch.tensor([[-5.0, -1.0, 50.0, 20.0]])
    assert clip_bboxes(boxes, (10, 30)).tolist() == [[0.0, 0.0, 30.0, 10.0]]


def test_bbox2roi_and_back():
    boxes = [torch.rand(3, 4), torch.zeros(0, 4), torch.rand(2, 5)]
    rois = bbox2roi(boxes)
    assert rois.shape == (5, 5)
    assert rois[:, 0].tolist() == [0, 0, 0, 2, 2]
    back = roi2bbox(rois, 3)
    assert [b.shape[0] for b in back] == [3, 0, 2]
    torch.testing.assert_close(back[2], boxes[2][:, :4])


def test_bbox2result():
    dets = torch.tensor([[0, 0, 1, 1, 0.9], [0, 0, 2, 2, 0.8], [1, 1, 3, 3, 0.7]])
    result = bbox2result(dets, torch.tensor([2, 0, 2]), num_classes=3)
    assert [r.shape for r in result] == [(1, 5), (0, 5), (2, 5)]
    np.testing.assert_allclose(result[2][:, 4], [0.9, 0.7])
    assert [r.shape for r in bbox2result(torch.zeros(0, 5), torch.zeros(0).long(), 2)] == [
        (0, 5),
        (0, 5),
    ]


@pytest.mark.parametrize("mode", ["iou", "iof", "giou"])
def test_numpy_boxes_take_the_same_code_and_give_the_same_numbers(mode):
    """Evaluation and the data pipeline pass numpy arrays to the one implementation: equal to
    the tensor result (and torchvision's IoU), in the arrays' own dtype, chunked or not."""
    g = torch.Generator().manual_seed(3)
    a, b = random_boxes(29, g).double(), random_boxes(17, g).double()
    expected = bbox_overlaps(a, b, mode=mode).numpy()
    got = bbox_overlaps(a.numpy(), b.numpy(), mode=mode)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(
        bbox_overlaps(a.numpy(), b.numpy(), mode=mode, chunk_pairs=40), expected, rtol=1e-12
    )
    if mode == "iou":
        np.testing.assert_allclose(got, torchvision.ops.box_iou(a, b).numpy(), rtol=1e-12)
    aligned = bbox_overlaps(a.numpy()[:17], b.numpy(), mode=mode, is_aligned=True)
    np.testing.assert_allclose(aligned, np.diag(expected[:17]), rtol=1e-12)


def test_numpy_clip_and_xywh():
    boxes = np.array([[-5.0, -1.0, 50.0, 20.0, 1.0, 2.0, 3.0, 40.0]], dtype=np.float32)
    clipped = clip_bboxes(boxes, (10, 30))
    assert clipped.dtype == np.float32 and boxes[0, 0] == -5.0  # a new array
    assert clipped.tolist() == [[0.0, 0.0, 30.0, 10.0, 1.0, 2.0, 3.0, 10.0]]
    xywh = bbox_xyxy_to_xywh(np.array([[1.0, 2.0, 4.0, 8.0, 0.9]]))
    assert xywh.tolist() == [[1.0, 2.0, 3.0, 6.0]]


def test_box_math_is_written_once():
    """IoU, clipping, xyxy -> xywh and RLE encoding have one implementation each, in
    structures/: the evaluation, dataset and API modules hold no copy of their own."""
    import inspect
    import re

    import mmdet_like.apis.test as apis_test
    import mmdet_like.datasets.pipelines.transforms as transforms
    import mmdet_like.evaluation.coco_metric as coco_metric
    import mmdet_like.evaluation.mean_ap as mean_ap
    import mmdet_like.evaluation.recall as recall

    for module in (apis_test, transforms, coco_metric, mean_ap, recall):
        source = inspect.getsource(module)
        assert not re.search(r"np\.(maximum|minimum)\(\w+\[:, None, :2\]", source), module
        assert "mask_utils.encode(" not in source, module
        assert not re.search(r"\.clip\(0, shape\[", source), module
