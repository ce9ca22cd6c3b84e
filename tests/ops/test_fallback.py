"""The fallback ops (mmdet_like/ops/fallback.py) against the compiled ones, and the backend
choice (mmdet_like/ops/_ext_loader.py).

In this process the fallback kernels are called as plain functions beside the compiled ops
(one process cannot register both under ``torch.ops.mmdet_like``). A child process started
with ``MMDET_LIKE_OPS_BACKEND=fallback`` runs what a user without the compiled extension
runs: it reports its backend and log line, its op namespace, the ONNX files of the ops, and
one tiny detector of each family trained one step and run, all compared here with this
process's compiled results.

Tolerances were measured (largest difference seen, times a margin): the fallback runs
torchvision's roi_align kernels, which take the same samples with the same weights as ours
but sum them in another order.
"""

import contextlib
import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmdet_like.ops import _ext_loader, backend, fallback, nms_op
from mmdet_like.ops import batched_nms as batched_nms_public

ROOT = Path(__file__).resolve().parents[2]
compiled_only = pytest.mark.skipif(
    backend() != "compiled",
    reason="compares with the compiled extension, which this process does not run",
)
op = torch.ops.mmdet_like


# ------------------------------------------------------------------------------ inputs


def make_rois(num, batch_size, image_size, generator, dtype=torch.float32):
    """(num, 5) rois, partly outside a square image of ``image_size`` pixels, plus RoIs of
    zero and negative size (x2 < x1 or y2 < y1), fully outside, and larger than the map."""
    xy = torch.rand(num, 2, generator=generator) * image_size * 1.2 - image_size * 0.1
    wh = torch.rand(num, 2, generator=generator) * image_size * 0.6
    batch = torch.randint(0, batch_size, (num, 1), generator=generator).float()
    s = image_size
    special = torch.tensor(
        [
            [0, 5.0, 5.0, 5.0, 5.0],  # zero size
            [0, 0.4 * s, 0.1 * s, 0.1 * s, 0.4 * s],  # x2 < x1 (several bins wide)
            [0, 0.1 * s, 0.4 * s, 0.4 * s, 0.1 * s],  # y2 < y1
            [0, 0.5 * s, 0.5 * s, 0.2 * s, 0.3 * s],  # both negative
            [0, 0.2 * s, 0.2 * s, 0.2 * s + 0.3, 0.2 * s + 0.3],  # under one pixel
            [0, -2.0 * s, -2.0 * s, -1.5 * s, -1.5 * s],  # fully outside
            [0, -0.5 * s, -0.5 * s, 2.0 * s, 2.0 * s],  # larger than the map
        ]
    )
    special[:, 0] = torch.arange(len(special)) % batch_size
    return torch.cat([torch.cat([batch, xy, xy + wh], dim=1), special]).to(dtype)


def random_boxes(num, generator, image_size=600.0, max_size=120.0):
    xy = torch.rand(num, 2, generator=generator, dtype=torch.float64) * image_size
    wh = torch.rand(num, 2, generator=generator, dtype=torch.float64) * max_size + 1
    return torch.cat([xy, xy + wh], dim=1).float()


def clustered_boxes(num, generator, num_objects=20):
    """Jittered copies of a few objects, like RPN proposals (most get suppressed)."""
    centres = random_boxes(num_objects, generator, max_size=200.0)
    pick = torch.randint(0, num_objects, (num,), generator=generator)
    return centres[pick] + torch.randn(num, 4, generator=generator) * 8


# ------------------------------------------------------------------------------ roi_align

# Largest differences measured between the compiled and the fallback roi_align over the
# cases below (3 seeds), relative to the largest output (gradient) magnitude: float64
# 2.6e-16 (gradient 1.6e-16), float32 1.8e-7 (7.7e-8); tolerances about 4x that.
ROI_ALIGN_TOL = {torch.float64: 1e-15, torch.float32: 1e-6}
# bfloat16/half: both compute in float32 and round once; where the float32 sums differ in the
# last bits, rounding can go to the neighbouring value: one unit in the last place of the
# largest value (measured 3.5e-4 and 3.8e-4 of it)
LOW_PRECISION_TOL = {torch.bfloat16: 2**-7, torch.float16: 2**-10}


def roi_align_case(dtype, channels_last, seed=0, sampling_ratio=0, aligned=True):
    g = torch.Generator().manual_seed(seed)
    input = torch.randn(3, 5, 23, 31, generator=g).to(dtype)
    if channels_last:
        input = input.contiguous(memory_format=torch.channels_last)
    rois = make_rois(40, 3, 23 * 4, g)
    args = (0.25, 7, 6, sampling_ratio, aligned)
    return input, rois, args


def assert_close_rel(actual, expected, rel, what):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    scale = max(expected.abs().max().item(), 1e-30)
    diff = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    assert diff <= rel * scale, f"{what}: max difference {diff:.3g} > {rel:.1g} x {scale:.3g}"


@compiled_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_forward_and_backward_match_compiled(dtype, sampling_ratio, aligned):
    tol = ROI_ALIGN_TOL.get(dtype) or LOW_PRECISION_TOL[dtype]
    for channels_last in (False, True):
        input, rois, args = roi_align_case(dtype, channels_last, 0, sampling_ratio, aligned)
        ours = op.roi_align(input, rois, *args)
        theirs = fallback.roi_align(input, rois, *args)
        assert theirs.is_contiguous() and theirs.dtype == dtype
        assert_close_rel(theirs, ours, tol, f"forward {dtype} channels_last={channels_last}")
        # the special RoIs (last 7): zero where the compiled op gives zero
        assert torch.equal(theirs[-7:] == 0, ours[-7:] == 0)

        grad = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        shape = (*input.shape[:2], *input.shape[2:])
        bwd_args = (args[0], args[1], args[2], *shape, args[3], args[4])
        ours_grad = op._roi_align_backward(grad, rois, *bwd_args)
        theirs_grad = fallback.roi_align_backward(grad, rois, *bwd_args)
        assert_close_rel(theirs_grad, ours_grad, tol, f"backward {dtype}")


@compiled_only
def test_roi_align_autograd_and_non_contiguous_inputs_match_compiled():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(2, 8, 30, 40, generator=g, dtype=torch.float64)
    view = base[:, ::2, 2:25, 3:37]  # strided view
    rois = make_rois(25, 2, 100, g, dtype=torch.float32)  # float32 rois, float64 input
    for aligned in (True, False):
        ours_in = view.clone().requires_grad_(True)
        ours = op.roi_align(ours_in, rois, 0.25, 5, 5, 0, aligned)
        theirs = fallback.roi_align(view, rois, 0.25, 5, 5, 0, aligned)
        assert_close_rel(theirs, ours, ROI_ALIGN_TOL[torch.float64], "strided float64 view")
        ours.square().sum().backward()
        theirs_grad = fallback.roi_align_backward(
            2 * theirs, rois, 0.25, 5, 5, *view.shape, 0, aligned
        )
        assert_close_rel(theirs_grad, ours_in.grad, ROI_ALIGN_TOL[torch.float64], "autograd")


@compiled_only
def test_roi_align_empty_inputs_match_compiled():
    g = torch.Generator().manual_seed(3)
    rois = make_rois(6, 2, 40, g)
    for input, r in [
        (torch.randn(2, 4, 10, 12), rois[:0]),  # no RoIs
        (torch.randn(2, 0, 10, 12), rois),  # no channels
        (torch.randn(2, 4, 0, 12), rois),  # no rows
        (torch.randn(2, 4, 10, 0), rois),  # no columns
    ]:
        for aligned in (True, False):
            ours = op.roi_align(input, r, 0.5, 7, 7, 0, aligned)
            theirs = fallback.roi_align(input, r, 0.5, 7, 7, 0, aligned)
            assert theirs.shape == ours.shape and theirs.dtype == ours.dtype
            if ours.numel():
                assert torch.equal(theirs, ours)  # zeros
            grad = torch.ones(ours.shape)
            bwd = (r, 0.5, 7, 7, *input.shape, 0, aligned)
            assert torch.equal(fallback.roi_align_backward(grad, *bwd),
                               op._roi_align_backward(grad, *bwd))  # fmt: skip


@compiled_only
def test_roi_align_bad_arguments_raise_like_compiled():
    input = torch.randn(2, 3, 8, 8)
    cases = [
        ((input, torch.zeros(3, 4), 1.0, 7, 7, 0, True), r"rois must be \(K, 5\)"),
        ((input[0], torch.zeros(3, 5), 1.0, 7, 7, 0, True), r"input must be \(N, C, H, W\)"),
        ((input, torch.tensor([[2.0, 0, 0, 4, 4]]), 1.0, 7, 7, 0, True),
         r"rois\[0, 0\] = 2 is not a batch index of the input \(batch size 2\)"),
        ((input, torch.tensor([[0, 0, 0, 4, 4], [-1.0, 0, 0, 4, 4]]), 1.0, 7, 7, 0, True),
         r"rois\[1, 0\] = -1 is not a batch index"),
        ((input, torch.zeros(1, 5), 1.0, 0, 7, 0, True), "output_size must be positive"),
        ((input.long(), torch.zeros(1, 5), 1.0, 7, 7, 0, True), "input must be a floating"),
        ((input, torch.zeros(1, 5, dtype=torch.long), 1.0, 7, 7, 0, True), "rois must be a fl"),
    ]  # fmt: skip
    for args, message in cases:
        for fn in (op.roi_align, fallback.roi_align):
            with pytest.raises(RuntimeError, match=message):
                fn(*args)
    grad = torch.zeros(1, 3, 7, 6)
    for fn in (op._roi_align_backward, fallback.roi_align_backward):
        with pytest.raises(RuntimeError, match=r"grad must be \(K, C, ph, pw\)"):
            fn(grad, torch.zeros(1, 5), 1.0, 7, 7, 2, 3, 8, 8, 0, True)


@compiled_only
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_roi_align_cuda_matches_compiled(dtype):
    # the fallback's CUDA kernels are torchvision's: the tolerances of test_roi_align.py's
    # comparison of the compiled CUDA kernels with torchvision's (not measured here: no GPU)
    tol = {torch.float32: 1e-5, torch.float64: 1e-7, torch.float16: 1e-2, torch.bfloat16: 5e-2}
    for aligned in (True, False):
        for sampling_ratio in (0, 2):
            input, rois, args = roi_align_case(dtype, True, 5, sampling_ratio, aligned)
            input, rois = input.cuda(), rois.cuda()
            ours = op.roi_align(input, rois, *args)
            theirs = fallback.roi_align(input, rois, *args)
            assert theirs.dtype == dtype
            torch.testing.assert_close(theirs, ours, atol=tol[dtype], rtol=tol[dtype])
            grad = torch.randn(ours.shape, device="cuda").to(dtype)
            bwd = (args[0], args[1], args[2], *input.shape, args[3], args[4])
            torch.testing.assert_close(
                fallback.roi_align_backward(grad, rois, *bwd),
                op._roi_align_backward(grad, rois, *bwd),
                atol=tol[dtype] * 10, rtol=tol[dtype],
            )  # fmt: skip


@compiled_only
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_nms_cuda_matches_compiled(dtype):
    for name, boxes, scores in nms_cases():
        boxes, scores = boxes.cuda().to(dtype), scores.cuda().to(dtype)
        for threshold in (0.3, 0.5, 0.7):
            ours = op.nms(boxes, scores, threshold)
            assert torch.equal(fallback.nms(boxes, scores, threshold), ours), name


# ------------------------------------------------------------------------------ ms_deform_attn

# Largest differences measured between the compiled and the fallback ms_deform_attn over the
# cases below (5 seeds), relative to the largest value of each result (output, gradients):
# float64 3.6e-16, float32 8.5e-7; tolerances about 5x that. bfloat16/half: both compute in
# float32 and round once: LOW_PRECISION_TOL (one unit in the last place of the largest value;
# measured 2.1e-4 and 4.5e-4 of it).
MS_DEFORM_ATTN_TOL = {torch.float64: 2e-15, torch.float32: 4e-6}


def ms_deform_attn_case(dtype, seed=0, bs=2, queries=23):
    """Inputs of 4 levels (one 1 x 1), points partly outside the maps."""
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[9, 7], [5, 4], [3, 2], [1, 1]])
    sizes = shapes.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    value = torch.randn(bs, int(sizes.sum()), 3, 10, generator=g).to(dtype)
    locations = (torch.rand(bs, queries, 3, 4, 3, 2, generator=g) * 1.4 - 0.2).to(dtype)
    weights = torch.rand(bs, queries, 3, 4, 3, generator=g).to(dtype)
    grad = torch.randn(bs, queries, 30, generator=g).to(dtype)
    return (value, shapes, starts, locations, weights), grad


@compiled_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_ms_deform_attn_forward_and_backward_match_compiled(dtype):
    tol = MS_DEFORM_ATTN_TOL.get(dtype) or LOW_PRECISION_TOL[dtype]
    for seed in range(2):
        inputs, grad = ms_deform_attn_case(dtype, seed)
        ours = op.ms_deform_attn(*inputs)
        theirs = fallback.ms_deform_attn(*inputs)
        assert theirs.is_contiguous()
        assert_close_rel(theirs, ours, tol, f"forward {dtype}")
        ours_grads = op._ms_deform_attn_backward(*inputs, grad)
        theirs_grads = fallback.ms_deform_attn_backward(*inputs, grad)
        for name, t, o in zip(("value", "locations", "weights"), theirs_grads, ours_grads):
            assert t.is_contiguous()
            assert_close_rel(t, o, tol, f"gradient of {name} {dtype}")


@compiled_only
def test_ms_deform_attn_empty_inputs_match_compiled():
    for bs, queries in [(0, 4), (2, 0)]:
        inputs, grad = ms_deform_attn_case(torch.float32, 1, bs, queries)
        ours = op.ms_deform_attn(*inputs)
        theirs = fallback.ms_deform_attn(*inputs)
        assert theirs.shape == ours.shape == (bs, queries, 30)
        for t, o in zip(fallback.ms_deform_attn_backward(*inputs, grad),
                        op._ms_deform_attn_backward(*inputs, grad)):  # fmt: skip
            assert torch.equal(t, o)  # zeros


@compiled_only
def test_ms_deform_attn_bad_arguments_raise_like_compiled():
    (value, shapes, starts, locations, weights), grad = ms_deform_attn_case(torch.float32)
    cases = [
        ((value[0], shapes, starts, locations, weights), r"value must be \(bs, num_keys"),
        ((value, shapes[:, :1], starts, locations, weights), r"spatial_shapes must be \(num_lev"),
        ((value, shapes, starts[1:], locations, weights), r"level_start_index must be \(num_le"),
        ((value, shapes, starts, locations[..., :1], weights), r"sampling_locations must be \("),
        ((value, shapes, starts, locations, weights[:1]), r"attention_weights must be \(bs, nu"),
        ((value, shapes.int(), starts, locations, weights), "spatial_shapes must be int64"),
        ((value, shapes, starts.int(), locations, weights), "level_start_index must be int64"),
        ((value.long(), shapes, starts, locations, weights), "must have one floating dtype"),
        ((value, shapes, starts, locations, weights.double()), "must have one floating dtype"),
        ((value[:, :-1], shapes, starts, locations, weights), "value has 89 keys but spatial"),
        ((value, shapes, starts.flip(0), locations, weights), r"level_start_index\[0\] = 89"),
        ((value, shapes.neg(), starts, locations, weights), r"spatial_shapes\[0\] = \(-9, -7\)"),
    ]  # fmt: skip
    for args, message in cases:
        for fn in (op.ms_deform_attn, fallback.ms_deform_attn):
            with pytest.raises(RuntimeError, match=message):
                fn(*args)
        for fn in (op._ms_deform_attn_backward, fallback.ms_deform_attn_backward):
            with pytest.raises(RuntimeError, match=message):
                fn(*args, grad)
    for bad, message in [
        (
            grad[:, :, 1:],
            r"grad_output must be \(bs, num_queries, num_heads "
            r"\* dim_per_head\) = \(2, 23, 30\)",
        ),
        (grad.double(), r"grad_output must have the dtype of value \(Float\)"),
    ]:
        for fn in (op._ms_deform_attn_backward, fallback.ms_deform_attn_backward):
            with pytest.raises(RuntimeError, match=message):
                fn(value, shapes, starts, locations, weights, bad)  # fmt: skip


@compiled_only
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_ms_deform_attn_cuda_matches_compiled(dtype):
    # the tolerances of test_ms_deform_attn.py's CUDA tests (not measured here: no GPU)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2, torch.bfloat16: 5e-2}
    inputs, grad = ms_deform_attn_case(dtype, 5)
    inputs, grad = [t.cuda() for t in inputs], grad.cuda()
    assert_close_rel(fallback.ms_deform_attn(*inputs), op.ms_deform_attn(*inputs), tol[dtype],
                     f"cuda forward {dtype}")  # fmt: skip
    for t, o in zip(fallback.ms_deform_attn_backward(*inputs, grad),
                    op._ms_deform_attn_backward(*inputs, grad)):  # fmt: skip
        assert_close_rel(t, o, 10 * tol[dtype], f"cuda backward {dtype}")


# ------------------------------------------------------------------------------ nms


def nms_cases():
    g = torch.Generator().manual_seed(0)
    for num in (1, 2, 7, 64, 65, 300, 3000):
        yield f"random {num}", random_boxes(num, g), torch.rand(num, generator=g)
        yield f"clustered {num}", clustered_boxes(num, g), torch.rand(num, generator=g)
    boxes = clustered_boxes(500, g, num_objects=5)
    boxes[100:200] = boxes[0]  # exact duplicates
    yield "ties and duplicates", boxes, (torch.rand(500, generator=g) * 4).floor() / 4
    yield "all equal scores", clustered_boxes(300, g), torch.full((300,), 0.5)
    # IoU exactly 0.5 in float: suppressed only above the threshold
    yield (
        "threshold boundary",
        torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 20.0]]),
        torch.tensor([0.9, 0.8, 0.7]),
    )
    yield (
        "degenerate boxes",
        torch.tensor([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 1, 1.0]]),
        (torch.tensor([0.5, 0.5, 0.1])),
    )
    yield "empty", torch.zeros(0, 4), torch.zeros(0)


@compiled_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_nms_keeps_the_same_boxes_in_the_same_order(dtype):
    for name, boxes, scores in nms_cases():
        boxes, scores = boxes.to(dtype), scores.to(dtype)
        for threshold in (0.0, 0.3, 0.5, 0.49999, 0.7, 1.0):
            ours = op.nms(boxes, scores, threshold)
            theirs = fallback.nms(boxes, scores, threshold)
            assert theirs.dtype == torch.long
            assert torch.equal(theirs, ours), f"{name}, {dtype}, IoU {threshold}"


@compiled_only
def test_nms_mixed_types_and_views_match_compiled():
    g = torch.Generator().manual_seed(4)
    boxes = clustered_boxes(400, g)
    scores64 = torch.rand(400, generator=g, dtype=torch.float64)
    scores64[::7] = scores64[3]  # ties that only exist in float64 or after rounding
    wide = torch.cat([boxes, boxes], dim=1)[:, 2:6]  # non-contiguous view
    for b, s in [(boxes, scores64), (boxes.double(), scores64.float()), (wide, scores64[::1])]:
        assert torch.equal(fallback.nms(b, s, 0.5), op.nms(b, s, 0.5))


@compiled_only
def test_nms_bad_arguments_raise_like_compiled():
    cases = [
        ((torch.zeros(3, 5), torch.zeros(3)), r"nms: boxes must be \(N, 4\)"),
        ((torch.zeros(3, 4), torch.zeros(4)), r"nms: scores must be \(N,\) with N = 3"),
        ((torch.zeros(3, 4).long(), torch.zeros(3)), "must be floating tensors, got Long"),
    ]
    for args, message in cases:
        for fn in (op.nms, fallback.nms):
            with pytest.raises(RuntimeError, match=message):
                fn(*args, 0.5)


@compiled_only
@pytest.mark.parametrize("num", [300, 6000])  # the offset path; above 4,000 the per-class loop
def test_batched_nms_matches_compiled_on_both_paths(monkeypatch, num):
    g = torch.Generator().manual_seed(num)
    boxes = clustered_boxes(num, g, num_objects=30)
    scores = (torch.rand(num, generator=g) * 50).floor() / 50  # ties across classes
    idxs = torch.randint(0, 5, (num,), generator=g)
    expected = {
        "public": batched_nms_public(boxes, scores, idxs, 0.6),
        "offset": nms_op._batched_nms_offset(boxes, scores, idxs, 0.6),
        "per class": nms_op._batched_nms_per_class(boxes, scores, idxs, 0.6),
        "static": nms_op._batched_nms_static_categories(boxes, scores, idxs, 0.6, 5),
    }
    monkeypatch.setattr(nms_op, "_op", _FallbackOps())
    got = {
        "public": batched_nms_public(boxes, scores, idxs, 0.6),
        "offset": nms_op._batched_nms_offset(boxes, scores, idxs, 0.6),
        "per class": nms_op._batched_nms_per_class(boxes, scores, idxs, 0.6),
        "static": nms_op._batched_nms_static_categories(boxes, scores, idxs, 0.6, 5),
    }
    for path in expected:
        assert torch.equal(got[path], expected[path]), path


class _FallbackOps:
    """Stands in for ``torch.ops.mmdet_like`` in nms_op: the fallback kernels."""

    nms = staticmethod(fallback.nms)
    soft_nms = staticmethod(fallback.soft_nms)


# ------------------------------------------------------------------------------ soft_nms


def soft_nms_cases(dtype):
    g = torch.Generator().manual_seed(21)
    yield (
        "clustered",
        clustered_boxes(300, g, num_objects=6).to(dtype),
        (torch.rand(300, generator=g, dtype=torch.float64).to(dtype)),
    )
    boxes = clustered_boxes(200, g, num_objects=4).to(dtype)
    boxes[50:80] = boxes[0]
    yield "ties", boxes, ((torch.rand(200, generator=g) * 5).floor() / 5 + 0.1).to(dtype)
    yield "empty", torch.zeros(0, 4, dtype=dtype), torch.zeros(0, dtype=dtype)
    yield "one", torch.tensor([[0, 0, 4, 4.0]], dtype=dtype), torch.tensor([0.5], dtype=dtype)


@compiled_only
@pytest.mark.parametrize("method", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_nms_matches_compiled(method, dtype):
    for name, boxes, scores in soft_nms_cases(dtype):
        for iou_threshold, sigma, min_score in [(0.3, 0.5, 1e-3), (0.5, 0.1, 0.05),
                                                (0.0, 2.0, 0.0), (0.7, 0.5, 0.3)]:  # fmt: skip
            args = (iou_threshold, sigma, min_score, method)
            ours_dets, ours_keep = op.soft_nms(boxes, scores, *args)
            dets, keep = fallback.soft_nms(boxes, scores, *args)
            what = f"{name}, method {method}, {args}"
            assert keep.dtype == torch.long and dets.dtype == dtype, what
            assert torch.equal(keep, ours_keep), what
            # gaussian: numpy's exp (vectorised on some CPUs) and std::exp may differ in the
            # last bit of a double, and a score decayed at many steps accumulates that: equal
            # on the machine measured, 2.5e-15 relative with torch's vectorised exp (5 seeds,
            # 300 and 1,000 boxes); equal after rounding to float32 either way
            if method == 2 and dtype == torch.float64:
                torch.testing.assert_close(dets, ours_dets, rtol=1e-14, atol=0)
            else:
                assert torch.equal(dets, ours_dets), what


@compiled_only
def test_soft_nms_bad_arguments_raise_like_compiled():
    boxes, scores = torch.zeros(3, 4), torch.zeros(3)
    cases = [
        ((boxes, scores, 0.3, 0.5, 0.0, 3), "method must be 0 \\(hard\\), 1 \\(linear\\)"),
        ((boxes, scores, 0.3, 0.0, 0.0, 2), "sigma must be positive"),
        ((boxes, scores.double(), 0.3, 0.5, 0.0, 1), "must have the same dtype"),
        ((boxes.half(), scores.half(), 0.3, 0.5, 0.0, 1), "not implemented for 'Half'"),
        ((boxes, torch.zeros(2), 0.3, 0.5, 0.0, 1), r"soft_nms: scores must be \(N,\)"),
    ]
    for args, message in cases:
        for fn in (op.soft_nms, fallback.soft_nms):
            with pytest.raises(RuntimeError, match=message):
                fn(*args)


# ------------------------------------------------------------------------------ the rest


@contextlib.contextmanager
def log_records(level=logging.INFO):
    """Records of the ``mmdet_like`` logger (which may not propagate to caplog's root
    handler once a tool has set it up)."""
    records = []
    handler = logging.Handler(level)
    handler.emit = records.append
    logger = logging.getLogger("mmdet_like")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_fallback_build_info_parallel_regions_and_allocator(monkeypatch):
    info = dict(item.split("=", 1) for item in fallback.build_info().split(";"))
    assert info["torch"] == ".".join(torch.__version__.split("+")[0].split(".")[:3])
    assert info["cuda"] in {"0", "1"}
    assert fallback.parallel_regions_opened() == 0
    monkeypatch.setattr(fallback, "_allocator_notice_given", False)
    with log_records() as records:
        assert fallback.enable_cpu_caching_allocator(1 << 20) is False
        assert fallback.enable_cpu_caching_allocator(1 << 20) is False
    assert [r.getMessage() for r in records] == [
        "mmdet_like.ops: the CPU caching allocator is part of the compiled extension; with the "
        "fallback ops torch's default CPU allocator stays in place"
    ]  # once
    assert fallback.cpu_caching_allocator_enabled() is False
    assert fallback.cpu_caching_allocator_stats() == [0] * 6
    assert fallback.disable_cpu_caching_allocator() is True
    with pytest.raises(RuntimeError, match="min_block_bytes must be positive"):
        fallback.enable_cpu_caching_allocator(0)


def test_fallback_kernels_cover_every_schema():
    defined = {s.split("(", 1)[0] for s in _ext_loader.SCHEMAS}
    assert defined == set(_ext_loader.FALLBACK_KERNELS)
    for name in _ext_loader.FALLBACK_KERNELS:
        assert callable(getattr(fallback, name.lstrip("_")))


@pytest.fixture
def no_extension(monkeypatch):
    """The backend choice where mmdet_like._ext is not built; registering the fallback is
    recorded instead of done (this process has its ops already)."""
    registered = []

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(importlib, "import_module", missing)
    monkeypatch.setattr(_ext_loader, "_fallback_library", None)
    monkeypatch.setattr(_ext_loader, "register_fallback", lambda: registered.append(True))
    return registered


@pytest.mark.parametrize("value", ["", "auto", " AUTO "])
def test_missing_extension_chooses_the_fallback_with_one_warning(monkeypatch, no_extension,
                                                                 value):  # fmt: skip
    monkeypatch.setenv("MMDET_LIKE_OPS_BACKEND", value)
    with log_records() as records:
        assert _ext_loader._choose_backend() == "fallback"
    assert no_extension == [True]
    assert [r.levelname for r in records] == ["WARNING"]
    message = records[0].getMessage()
    assert message.startswith("mmdet_like.ops: compiled extension not built; using the PyTorch/")
    assert "pip install -e . --no-build-isolation" in message


def test_env_switch_chooses_the_fallback_with_one_info_line(monkeypatch, no_extension):
    monkeypatch.setenv("MMDET_LIKE_OPS_BACKEND", "fallback")
    with log_records() as records:
        assert _ext_loader._choose_backend() == "fallback"
    assert no_extension == [True]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("INFO", "mmdet_like.ops: using the PyTorch/torchvision fallback ops, as "
                 "MMDET_LIKE_OPS_BACKEND=fallback asks (slower than the compiled extension)")
    ]  # fmt: skip


def test_compiled_backend_required_but_missing_raises(monkeypatch, no_extension):
    monkeypatch.setenv("MMDET_LIKE_OPS_BACKEND", "compiled")
    with pytest.raises(_ext_loader.ExtensionError, match="is not built"):
        _ext_loader._choose_backend()
    assert no_extension == []


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv("MMDET_LIKE_OPS_BACKEND", "fast")
    with pytest.raises(_ext_loader.ExtensionError, match="'fast' is not one of compiled, fallb"):
        _ext_loader._choose_backend()


@compiled_only
def test_compiled_backend_logs_one_info_line(monkeypatch):
    monkeypatch.setenv("MMDET_LIKE_OPS_BACKEND", "compiled")
    with log_records() as records:
        assert _ext_loader._choose_backend() == "compiled"
    assert [r.levelname for r in records] == ["INFO"]
    assert (
        records[0]
        .getMessage()
        .startswith("mmdet_like.ops: using the compiled extension mmdet_like._ext (torch ")
    )


@compiled_only
def test_stale_build_is_an_error_that_names_the_fallback_switch(monkeypatch, tmp_path):
    monkeypatch.setattr(_ext_loader, "_running_torch_version", lambda: "1.13.1")
    monkeypatch.setenv("MMDET_LIKE_OPS_BACKEND", "")
    with pytest.raises(_ext_loader.ExtensionError, match="MMDET_LIKE_OPS_BACKEND=fallback"):
        _ext_loader._choose_backend()


@compiled_only
def test_fallback_process_cannot_load_the_extension_too(monkeypatch):
    monkeypatch.setattr(_ext_loader, "_fallback_library", object())
    with pytest.raises(_ext_loader.ExtensionError, match="cannot be loaded beside them"):
        _ext_loader.load_extension()


def _run(code, env_changes, check=True):
    env = dict(os.environ, **env_changes)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_without_the_extension_the_package_imports_and_runs():
    """A process where mmdet_like._ext cannot be imported, as where it is not built."""
    code = (
        "import sys; sys.modules['mmdet_like._ext'] = None  # import fails: not built\n"
        "import torch\n"
        "from mmdet_like.ops import backend, nms, roi_align\n"
        "x = torch.ones(1, 2, 8, 8, requires_grad=True)\n"
        "roi_align(x, torch.tensor([[0, 0, 0, 16, 16.0]]), 4, 0.5).sum().backward()\n"
        "boxes = torch.tensor([[0, 0, 4, 4], [0, 0, 4, 5], [6, 6, 9, 9.0]])\n"
        "print(backend(), nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist(),\n"
        "      x.grad.sum().item(), torch.ops.mmdet_like.parallel_regions_opened())\n"
    )
    out = _run(code, {"MMDET_LIKE_OPS_BACKEND": ""})
    assert out.stdout.split() == ["fallback", "[0,", "2]", "32.0", "0"]
    warnings = [line for line in out.stderr.splitlines() if "mmdet_like.ops:" in line]
    assert len(warnings) == 1 and "compiled extension not built" in warnings[0], out.stderr


# ------------------------------------------------------------------------------ setup.py


SETUP_SCENARIOS = {
    "without ops": {"MMDET_LIKE_WITH_OPS": "0"},
    "without compiler": {"CXX": "/nonexistent/c++"},
    "ops required without compiler": {"MMDET_LIKE_WITH_OPS": "1", "CXX": "/nonexistent/c++"},
    "default": {},
}
# setup.py's extensions in each scenario, setup() itself replaced (nothing is built)
SETUP_EXTENSIONS = """
import json, os, runpy, sys, setuptools
captured = {}
setuptools.setup = lambda **kw: captured.update(kw)
results = {}
for name, env in json.loads(sys.argv[1]).items():
    os.environ.update({"MMDET_LIKE_WITH_OPS": "", "CXX": "", **env})
    print("SCENARIO", name, flush=True)
    try:
        runpy.run_path("setup.py", run_name="__main__")
        results[name] = [e.name for e in captured.pop("ext_modules")]
    except SystemExit as exc:
        results[name] = str(exc)
print("RESULTS", json.dumps(results))
"""


def test_setup_builds_no_extension_without_ops_or_compiler():
    out = subprocess.run(
        [sys.executable, "-c", SETUP_EXTENSIONS, json.dumps(SETUP_SCENARIOS)], cwd=ROOT,
        capture_output=True, text=True, env=dict(os.environ, MMDET_LIKE_NO_CUDA="1"),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads(out.stdout.split("RESULTS ", 1)[1])
    assert results["without ops"] == []
    assert results["without compiler"] == []
    assert "MMDET_LIKE_WITH_OPS=1 but no C++ compiler" in results["ops required without compiler"]
    assert results["default"] == ["mmdet_like._ext"]
    printed = dict((part.split("\n", 1) + [""])[:2] for part in out.stdout.split("SCENARIO ")[1:])
    assert "MMDET_LIKE_WITH_OPS=0: building no compiled ops" in printed["without ops"]
    assert "no C++ compiler '/nonexistent/c++' found" in printed["without compiler"]
    assert "fallback ops" in printed["without compiler"]
    assert "setup.py:" not in printed["default"].split("RESULTS")[0]


def test_setup_without_ops_needs_no_torch():
    """Without the ops setup.py never imports torch (build_backend.py then asks for none in
    the build environment), and the requirements keep requirements.txt's torch range."""
    code = SETUP_EXTENSIONS.replace(
        "import json, os, runpy, sys, setuptools",
        "import json, os, runpy, sys, setuptools\nsys.modules['torch'] = None  # unimportable",
    ).replace(
        'results[name] = [e.name for e in captured.pop("ext_modules")]',
        'results[name] = [[e.name for e in captured.pop("ext_modules")],'
        ' captured.pop("install_requires")]',
    )
    scenarios = {k: SETUP_SCENARIOS[k] for k in ("without ops", "without compiler")}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(scenarios)], cwd=ROOT, capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads(out.stdout.split("RESULTS ", 1)[1])
    for name in scenarios:
        extensions, requires = results[name]
        assert extensions == [] and "torch>=2.13" in requires, (name, results[name])


# ------------------------------------------------------------------------------ end to end

# one tiny detector of each family (tests/models/test_configs.py shrinks them)
FAMILIES = {
    "faster_rcnn": "faster_rcnn_r50_fpn_1x.py",
    "mask_rcnn": "mask_rcnn_r50_fpn_1x.py",
    "cascade_mask_rcnn": "cascade_mask_rcnn_r50_fpn_1x.py",
    "keypoint_rcnn": "keypoint_rcnn_r50_fpn_1x.py",
    "retinanet": "retinanet_r50_fpn_1x.py",
    "fcos": "fcos_r50_caffe_fpn_gn-head_1x.py",
    "rpn": "rpn_r50_fpn_1x.py",
}


def family_results(name):
    """One training step (losses, parameter gradients) and inference of the family's tiny
    detector on test_configs' synthetic batch, as plain tensors."""
    sys.path.insert(0, str(ROOT / "tests" / "models"))
    try:
        import test_configs as tc
    finally:
        sys.path.pop(0)
    from mmdet_like.engine import load_config
    from mmdet_like.models import build_detector
    from mmdet_like.structures import DetDataSample, samples_from_lists

    cfg = load_config(str(ROOT / "configs" / FAMILIES[name]))
    model_cfg, train_cfg, test_cfg = (
        cfg.model.to_dict(), cfg.train_cfg.to_dict(), cfg.test_cfg.to_dict()
    )  # fmt: skip
    if name == "faster_rcnn":  # Soft-NMS on the boxes, to run soft_nms end to end too
        test_cfg["rcnn"]["nms"] = dict(type="soft_nms", iou_thr=0.3, method="gaussian")
    if "score_thr" in test_cfg:  # single-stage: untrained heads score every box about 0.01
        test_cfg["score_thr"] = 0.0
    torch.manual_seed(0)
    model = build_detector(tc.shrink(model_cfg), train_cfg, test_cfg)
    model.init_weights()
    data = tc.batch()
    data.pop("proposals")
    train_pipeline, _ = tc.pipelines(cfg)
    loads = [s for s in train_pipeline if s["type"] == "LoadAnnotations"]
    if not any(s.get("with_mask") for s in loads):
        data.pop("gt_masks")
    img = data.pop("img")
    samples = samples_from_lists(**data)
    if any(s.get("with_keypoints") for s in loads):
        for sample in samples:
            sample.gt_instances.keypoints = tc.box_keypoints(sample.gt_instances.bboxes)
    losses = model(img=img, data_samples=samples)
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    result = {
        "losses": {k: v.detach() for k, v in losses.items() if "loss" in k},
        "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
    }
    model.eval()
    test_samples = samples_from_lists(data["img_metas"])
    test_samples = [[DetDataSample(s.metainfo)] for s in test_samples]
    with torch.no_grad():
        outputs = model(img=[[i] for i in img], data_samples=test_samples, return_loss=False,
                        rescale=True)  # fmt: skip
    result["predictions"] = [
        {k: getattr(output.pred_instances, k) for k in output.pred_instances.keys()}
        for output in outputs
    ]
    return result


def onnx_file(folder):
    """The ops (roi_align in both modes, nms) exported to ONNX as the deployment path does it
    (torch.export, then the translation table): the file's bytes."""
    from mmdet_like.deployment.onnx_ops import ONNX_OPSET, translation_table
    from mmdet_like.ops import nms, roi_align

    class Ops(torch.nn.Module):
        def forward(self, feats, rois, boxes, scores):
            return (
                roi_align(feats, rois, (7, 6), 0.25, 0, True),
                roi_align(feats, rois, 5, 0.25, 2, False),
                nms(boxes, scores, 0.5),
            )

    g = torch.Generator().manual_seed(0)
    args = (torch.randn(2, 3, 20, 24, generator=g), make_rois(12, 2, 80, g),
            clustered_boxes(50, g), torch.rand(50, generator=g))  # fmt: skip
    program = torch.export.export(Ops(), args)
    onnx_program = torch.onnx.export(
        program, args, custom_translation_table=translation_table(), opset_version=ONNX_OPSET,
        dynamo=True, external_data=False, verbose=False,
    )  # fmt: skip
    path = Path(folder) / "ops.onnx"
    onnx_program.save(str(path), external_data=False)
    return path.read_bytes()


def namespace():
    """{op: [schema, dispatch keys with a kernel]} of torch.ops.mmdet_like here."""
    keys = ("CPU", "CUDA", "Meta", "Autograd", "AutocastCPU", "CompositeImplicitAutograd",
            "CompositeExplicitAutograd")  # fmt: skip
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("mmdet_like::")]
    return {
        n: [str(getattr(op, n.split("::")[1]).default._schema),
            [k for k in keys if torch._C._dispatch_has_kernel_for_dispatch_key(n, k)]]
        for n in sorted(names)
    }  # fmt: skip


def child_main(folder):
    """What the fallback child runs (``MMDET_LIKE_OPS_BACKEND=fallback``)."""
    folder = Path(folder)
    torch.set_num_threads(1)  # as the parent: the two run side by side
    (folder / "namespace.json").write_text(json.dumps({"backend": backend(), "ops": namespace()}))
    onnx_file(folder)
    torch.save({name: family_results(name) for name in FAMILIES}, folder / "results.pt")


def compare_results(theirs, ours, name):
    """Measured (compiled against fallback, the 7 families): losses equal; gradients within
    4.6e-7 of each tensor's largest value, except where the gradient is zero but for
    rounding (the keypoint head's deconv bias: 9.5e-9, 8e-9 of the model's largest);
    boxes within 3.8e-6 px, scores 4.2e-7; labels and keypoint positions equal; 1 mask
    pixel of 140,000 flipped (an untrained mask head's probabilities are all near the 0.5
    threshold)."""
    for key, value in ours["losses"].items():
        torch.testing.assert_close(theirs["losses"][key], value, rtol=1e-6, atol=0,
                                   msg=lambda m, k=key: f"{name} {k}: {m}")  # fmt: skip
    assert theirs["grads"].keys() == ours["grads"].keys()
    largest = max(g.abs().max().item() for g in ours["grads"].values())
    for key, value in ours["grads"].items():
        diff = (theirs["grads"][key] - value).abs().max().item()
        bound = 2e-6 * value.abs().max().item() + 5e-8 * largest
        assert diff <= bound, f"{name} gradient of {key}: {diff:.3g} > {bound:.3g}"
    assert len(theirs["predictions"]) == len(ours["predictions"])
    for image, (t, o) in enumerate(zip(theirs["predictions"], ours["predictions"])):
        assert t.keys() == o.keys()
        for key in o:
            what = f"{name} image {image} {key}"
            if key == "masks":
                assert t[key].shape == o[key].shape, what
                flipped = (t[key] != o[key]).sum().item()
                assert flipped <= 1e-3 * max(o[key].sum().item(), 1), f"{what}: {flipped} flips"
            elif o[key].dtype in (torch.bool, torch.long):
                assert torch.equal(t[key], o[key]), what
            else:
                torch.testing.assert_close(t[key], o[key], rtol=1e-6, atol=2e-6,
                                           msg=lambda m, w=what: f"{w}: {m}")  # fmt: skip
    assert sum(len(p["bboxes"]) for p in ours["predictions"]) > 0, f"{name}: no detections"


@compiled_only
def test_every_family_runs_on_the_fallback_as_on_compiled(tmp_path):
    code = (
        "import logging, sys; sys.path.insert(0, 'tests/ops')\n"
        "logging.basicConfig(level=logging.INFO, format='LOG %(levelname)s %(message)s')\n"
        "import test_fallback; test_fallback.child_main(sys.argv[1])\n"
    )
    env = dict(os.environ, MMDET_LIKE_OPS_BACKEND="fallback")
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core each, for this process and the child
    try:
        ours = {name: family_results(name) for name in FAMILIES}
        # the compiled ops' ONNX file from a fresh process too, as the fallback's: a process
        # that exported other graphs before (a pytest worker) may name values differently
        (tmp_path / "compiled").mkdir()
        compiled_onnx = subprocess.run(
            [sys.executable, "-c", "import sys; sys.path.insert(0, 'tests/ops'); import "
             "test_fallback; test_fallback.onnx_file(sys.argv[1])", str(tmp_path / "compiled")],
            cwd=ROOT, env=dict(os.environ, MMDET_LIKE_OPS_BACKEND="compiled"),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert compiled_onnx.returncode == 0, compiled_onnx.stdout + compiled_onnx.stderr
        ours_onnx = (tmp_path / "compiled" / "ops.onnx").read_bytes()
    finally:
        torch.set_num_threads(threads)
        stdout, stderr = child.communicate(timeout=600)
    assert child.returncode == 0, stdout + stderr

    report = json.loads((tmp_path / "namespace.json").read_text())
    assert report["backend"] == "fallback"
    lines = [line for line in stderr.splitlines() if "mmdet_like.ops:" in line]
    assert lines == [
        "LOG INFO mmdet_like.ops: using the PyTorch/torchvision fallback ops, as "
        "MMDET_LIKE_OPS_BACKEND=fallback asks (slower than the compiled extension)"
    ], stderr
    compiled_ops = namespace()
    assert report["ops"].keys() == compiled_ops.keys()
    for name, (schema, keys) in compiled_ops.items():
        their_schema, their_keys = report["ops"][name]
        assert their_schema == schema, name
        assert set(keys) <= set(their_keys), name  # the fallback may add CUDA kernels
        if _ext_loader.built_with_cuda():
            assert their_keys == keys, name

    assert (tmp_path / "ops.onnx").read_bytes() == ours_onnx, "the ONNX files differ"

    theirs = torch.load(tmp_path / "results.pt")
    for name in FAMILIES:
        compare_results(theirs[name], ours[name], name)
