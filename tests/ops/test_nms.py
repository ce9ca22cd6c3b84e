"""nms, batched_nms and soft_nms against torchvision.ops and a plain reference implementation."""

import math

import pytest
import torch
import torchvision

from mmdet_like.ops import batched_nms, nms, soft_nms
from mmdet_like.ops import nms_op as nms_module


def random_boxes(num, generator, image_size=600.0, max_size=120.0, dtype=torch.float32):
    xy = torch.rand(num, 2, generator=generator, dtype=torch.float64) * image_size
    wh = torch.rand(num, 2, generator=generator, dtype=torch.float64) * max_size + 1
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def clustered_boxes(num, generator, num_objects=20):
    """Many jittered copies of a few objects, like RPN proposals (most get suppressed)."""
    centres = random_boxes(num_objects, generator, max_size=200.0)
    pick = torch.randint(0, num_objects, (num,), generator=generator)
    jitter = torch.randn(num, 4, generator=generator) * 8
    return centres[pick] + jitter.to(centres.dtype)


@pytest.mark.parametrize("num", [1, 7, 64, 65, 300, 3000])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_nms_matches_torchvision(num, iou_threshold, kind):
    g = torch.Generator().manual_seed(num)
    boxes = random_boxes(num, g) if kind == "random" else clustered_boxes(num, g)
    scores = torch.rand(num, generator=g)
    ours = nms(boxes, scores, iou_threshold)
    ref = torchvision.ops.nms(boxes, scores, iou_threshold)
    assert ours.dtype == torch.long
    assert torch.equal(ours, ref)


def test_nms_ties_and_duplicates():
    g = torch.Generator().manual_seed(0)
    boxes = clustered_boxes(500, g, num_objects=5)
    boxes[100:200] = boxes[0]  # exact duplicates
    scores = (torch.rand(500, generator=g) * 4).floor() / 4  # only 4 distinct scores
    for threshold in (0.0, 0.5, 1.0):
        assert torch.equal(
            nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold)
        )
    # Equal scores: the lower index wins.
    same = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10.0]])
    assert nms(same, torch.ones(3), 0.5).tolist() == [0]


def test_nms_threshold_boundary_matches_torchvision():
    # IoU exactly 0.5 in float: a box is suppressed only when IoU > threshold.
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 20.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    for threshold in (0.5, 0.49999, 0.50001, 0.7):
        assert torch.equal(
            nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold)
        )


def test_nms_degenerate_and_empty():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    boxes = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [5, 5, 4, 4], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert torch.equal(nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))


def test_nms_float64_and_non_contiguous():
    g = torch.Generator().manual_seed(3)
    boxes = random_boxes(400, g, dtype=torch.float64)
    scores = torch.rand(800, generator=g, dtype=torch.float64)[::2]
    wide = torch.cat([boxes, boxes], dim=1)[:, :4]
    assert not wide.is_contiguous()
    assert torch.equal(nms(wide, scores, 0.4), torchvision.ops.nms(boxes, scores, 0.4))


@pytest.mark.parametrize("num", [0, 50, 2000])
def test_batched_nms_offset_path_matches_torchvision(num):
    g = torch.Generator().manual_seed(num + 1)
    boxes = clustered_boxes(num, g) if num else torch.zeros(0, 4)
    scores = torch.rand(num, generator=g)
    idxs = torch.randint(0, 5, (num,), generator=g)
    ours = batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(ours, torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))


def test_batched_nms_per_class_loop_matches_torchvision(monkeypatch):
    g = torch.Generator().manual_seed(11)
    boxes = clustered_boxes(6000, g)
    scores = torch.rand(6000, generator=g)
    idxs = torch.randint(0, 8, (6000,), generator=g)
    calls = []
    original = nms_module._batched_nms_per_class

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(nms_module, "_batched_nms_per_class", spy)
    ours = batched_nms(boxes, scores, idxs, 0.6)
    assert calls, "inputs above the threshold must take the per-class loop"
    assert torch.equal(ours, torchvision.ops.batched_nms(boxes, scores, idxs, 0.6))
    # The two strategies agree with each other too.
    assert torch.equal(ours, nms_module._batched_nms_offset(boxes, scores, idxs, 0.6))


def reference_soft_nms(boxes, scores, iou_threshold, sigma, min_score, method):
    """Textbook soft-NMS on Python floats."""
    boxes = boxes.tolist()
    candidates = [(s, i) for i, s in enumerate(scores.tolist()) if s >= min_score]
    candidates.sort(key=lambda c: (-c[0], c[1]))
    kept, kept_scores = [], []
    while candidates:
        best = max(range(len(candidates)), key=lambda j: (candidates[j][0], -j))
        score, i = candidates.pop(best)
        kept.append(i)
        kept_scores.append(score)
        x1, y1, x2, y2 = boxes[i]
        survivors = []
        for s, j in candidates:
            a1, b1, a2, b2 = boxes[j]
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            iou = inter / ((x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter)
            if method == "linear":
                weight = 1 - iou if iou > iou_threshold else 1.0
            elif method == "gaussian":
                weight = math.exp(-iou * iou / sigma)
            else:
                weight = 0.0 if iou > iou_threshold else 1.0
            if s * weight >= min_score:
                survivors.append((s * weight, j))
        candidates = survivors
    return kept, kept_scores


@pytest.mark.parametrize("method", ["linear", "gaussian", "hard"])
def test_soft_nms_matches_reference(method):
    g = torch.Generator().manual_seed(21)
    boxes = clustered_boxes(150, g, num_objects=6).double()
    scores = torch.rand(150, generator=g, dtype=torch.float64)
    dets, keep = soft_nms(
        boxes, scores, iou_threshold=0.3, sigma=0.5, min_score=0.05, method=method
    )
    ref_keep, ref_scores = reference_soft_nms(boxes, scores, 0.3, 0.5, 0.05, method)
    assert keep.tolist() == ref_keep
    torch.testing.assert_close(dets[:, 4], torch.tensor(ref_scores, dtype=torch.float64))
    torch.testing.assert_close(dets[:, :4], boxes[keep])


def test_soft_nms_hard_equals_nms_and_decays_scores():
    g = torch.Generator().manual_seed(22)
    boxes = clustered_boxes(300, g, num_objects=8)
    scores = torch.rand(300, generator=g)
    # Suppressed boxes get score 0, which is below any positive min_score.
    _, keep = soft_nms(boxes, scores, iou_threshold=0.5, min_score=1e-9, method="hard")
    assert torch.equal(keep, nms(boxes, scores, 0.5))
    dets, keep = soft_nms(boxes, scores, iou_threshold=0.5, min_score=0.0, method="linear")
    assert len(keep) > len(nms(boxes, scores, 0.5))
    assert torch.all(dets[:, 4] <= scores[keep] + 1e-7)
    assert torch.all(dets[1:, 4] <= dets[:-1, 4])


def test_nms_bad_arguments():
    with pytest.raises(RuntimeError, match=r"boxes must be \(N, 4\)"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(RuntimeError, match=r"scores must be \(N,\)"):
        nms(torch.zeros(3, 4), torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="method must be one of"):
        soft_nms(torch.zeros(3, 4), torch.zeros(3), method="cubic")


def test_nms_opcheck_and_compile():
    g = torch.Generator().manual_seed(5)
    boxes = clustered_boxes(200, g)
    scores = torch.rand(200, generator=g)
    torch.library.opcheck(torch.ops.mmdet_like.nms.default, (boxes, scores, 0.5))
    compiled = torch.compile(lambda b, s: nms(b, s, 0.5), backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(boxes, scores), torchvision.ops.nms(boxes, scores, 0.5))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_nms_cuda_matches_torchvision(dtype):
    g = torch.Generator().manual_seed(8)
    for num in (1, 100, 5000, 20000):
        boxes = clustered_boxes(num, g).cuda().to(dtype)
        scores = torch.rand(num, generator=g).cuda().to(dtype)
        for threshold in (0.5, 0.7):
            ours = nms(boxes, scores, threshold)
            ref = torchvision.ops.nms(boxes, scores, threshold)
            assert torch.equal(ours, ref)


@pytest.mark.cuda
def test_batched_nms_cuda_matches_cpu():
    g = torch.Generator().manual_seed(9)
    boxes = clustered_boxes(3000, g)
    scores = torch.rand(3000, generator=g)
    idxs = torch.randint(0, 4, (3000,), generator=g)
    cpu = batched_nms(boxes, scores, idxs, 0.5)
    cuda = batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5)
    assert torch.equal(cuda.cpu(), cpu)
